// Package arch checks rules of the module's shape that no compiler checks:
// which packages may link Kubernetes, and how long a function may be.
// They read the source tree and ask the go command, so they need neither
// network nor cluster.
package arch

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// module is the import path of the module under test.
const module = "github.com/shard-proxy/shard-proxy"

// k8sFree are the packages that must not link any k8s.io package: the data
// and admin planes, the routing table, the ring, the shared model and the
// public clients (a program that routes by itself must not pull in
// Kubernetes). They take a watch.Topology and never see an API object.
var k8sFree = []string{
	"internal/proxy",
	"internal/proxy/h1",
	"internal/table",
	"internal/memtrim",
	"internal/admin",
	"ring",
	"internal/watch",
	"client",
	"client/shardgrpc",
}

// clientGoUsers are the only packages that may link client-go: the
// Kubernetes source and the command that builds its client.
var clientGoUsers = []string{"internal/watch/kube", "cmd/shard-proxy"}

// maxFuncLines is the longest a function may be, from its func line to its
// closing brace: short enough to read at once.
const maxFuncLines = 70

// deps maps each package of the module matching patterns to every package
// it links (go list -deps, tests not included).
func deps(t *testing.T, patterns ...string) map[string][]string {
	t.Helper()
	args := append([]string{"list", "-f", `{{.ImportPath}} {{join .Deps " "}}`}, patterns...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	m := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) > 0 {
			m[strings.TrimPrefix(fields[0], module+"/")] = fields[1:]
		}
	}
	return m
}

// root is the module's directory.
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err != nil || !bytes.Contains(b, []byte("module "+module+"\n")) {
		t.Fatalf("%s is not the root of %s: %v", dir, module, err)
	}
	return dir
}

// linked returns the packages of deps that start with prefix.
func linked(deps []string, prefix string) []string {
	var out []string
	for _, d := range deps {
		if strings.HasPrefix(d, prefix) {
			out = append(out, d)
		}
	}
	return out
}

// TestNoKubernetesInTheProxy checks that the planes, the table, the ring and
// the model link no k8s.io package.
func TestNoKubernetesInTheProxy(t *testing.T) {
	var patterns []string
	for _, p := range k8sFree {
		// A pattern that matches nothing would fail go list.
		if _, err := os.Stat(filepath.Join(root(t), strings.TrimSuffix(p, "/..."))); err == nil {
			patterns = append(patterns, "./"+p)
		}
	}
	for pkg, d := range deps(t, patterns...) {
		if k := linked(d, "k8s.io/"); len(k) > 0 {
			t.Errorf("%s links %d k8s.io packages, want none; e.g. %s", pkg, len(k), k[0])
		}
	}
}

// TestClientGoOnlyInKubeAndCmd checks that of the module's packages only the
// Kubernetes source and the command link client-go.
func TestClientGoOnlyInKubeAndCmd(t *testing.T) {
	all := deps(t, "./...")
	for _, p := range clientGoUsers {
		if _, ok := all[p]; !ok {
			t.Errorf("package %s not found; update clientGoUsers", p)
		}
	}
	for pkg, d := range all {
		if !strings.HasPrefix(pkg, "internal/") || isClientGoUser(pkg) {
			continue // test/... harnesses run a control plane and may link it
		}
		if k := linked(d, "k8s.io/client-go/"); len(k) > 0 {
			t.Errorf("%s links client-go (e.g. %s); only %v may", pkg, k[0], clientGoUsers)
		}
	}
}

func isClientGoUser(pkg string) bool {
	for _, p := range clientGoUsers {
		if pkg == p {
			return true
		}
	}
	return false
}

// lengthChecked are the directories, relative to the root, whose Go files
// TestFunctionLength reads, each walked as a module of its own: the main
// module and the bench module, which follows the same rule although it has
// a go.mod of its own. test/tools/ is left out: it only pins tool versions.
var lengthChecked = []string{".", "bench"}

// TestFunctionLength checks that no function or method outside tests is
// longer than maxFuncLines. It reads every non-test .go file of each module
// in lengthChecked; within a walk, directories with a go.mod of their own
// are other modules and are left out, as are testdata directories.
func TestFunctionLength(t *testing.T) {
	dir := root(t)
	for _, m := range lengthChecked {
		if files := checkFuncLengths(t, dir, filepath.Join(dir, m)); files == 0 {
			t.Errorf("no Go files found in %s", m)
		}
	}
}

// checkFuncLengths reports every long function in the module at mod, with
// paths relative to root, and returns how many files it read.
func checkFuncLengths(t *testing.T, root, mod string) int {
	t.Helper()
	files := 0
	err := filepath.WalkDir(mod, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != mod && skipDir(path) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		files++
		rel, _ := filepath.Rel(root, path)
		for _, f := range longFuncs(t, path) {
			t.Errorf("%s:%d: %s is %d lines long, want at most %d", rel, f.line, f.name, f.lines, maxFuncLines)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// skipDir reports whether the walk leaves out the directory at path.
func skipDir(path string) bool {
	name := filepath.Base(path)
	if name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
		return true
	}
	_, err := os.Stat(filepath.Join(path, "go.mod"))
	return err == nil
}

type funcLen struct {
	name        string
	line, lines int
}

// longFuncs parses the file at path and returns its functions longer than
// maxFuncLines, counting a function's declaration to its closing brace.
// Function literals count within the function that holds them; one at
// package level counts on its own.
func longFuncs(t *testing.T, path string) []funcLen {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Errorf("parsing %s: %v", path, err)
		return nil
	}
	var long []funcLen
	check := func(name string, from, to token.Pos) {
		start, end := fset.Position(from).Line, fset.Position(to).Line
		if n := end - start + 1; n > maxFuncLines {
			long = append(long, funcLen{name, start, n})
		}
	}
	for _, decl := range f.Decls {
		switch d := decl.(type) {
		case *ast.FuncDecl:
			if d.Body != nil {
				check(funcName(d), d.Pos(), d.End())
			}
		case *ast.GenDecl:
			ast.Inspect(d, func(n ast.Node) bool {
				if lit, ok := n.(*ast.FuncLit); ok {
					check("func literal", lit.Pos(), lit.End())
					return false
				}
				return true
			})
		}
	}
	return long
}

// funcName is F for a function and T.M for a method.
func funcName(d *ast.FuncDecl) string {
	if d.Recv == nil || len(d.Recv.List) == 0 {
		return d.Name.Name
	}
	typ := d.Recv.List[0].Type
	if star, ok := typ.(*ast.StarExpr); ok {
		typ = star.X
	}
	switch x := typ.(type) {
	case *ast.IndexExpr:
		typ = x.X
	case *ast.IndexListExpr:
		typ = x.X
	}
	return fmt.Sprintf("%s.%s", typ, d.Name.Name)
}

// frontEnds are the data plane's front ends: each serves one protocol and
// asks route for every request's owner. They never import each other (the
// facade, internal/proxy, hands connections between them through a
// callback), so that a feature written above the protocols is written once.
var frontEnds = []string{"internal/proxy/http1", "internal/proxy/http2"}

// proxyLeaves are the packages the front ends share: none of them may link
// a front end or the facade.
var proxyLeaves = []string{
	"internal/proxy/route", "internal/proxy/answer", "internal/proxy/header",
	"internal/proxy/keys", "internal/proxy/hotkeys", "internal/proxy/h1",
	"internal/proxy/upstream", "internal/proxy/sock", "internal/proxy/h2hpack",
	"internal/proxy/h2wire", "internal/proxy/h1write", "internal/proxy/wsframe",
	"internal/proxy/workers",
}

// TestFrontEndsApart checks that no front end links another, and that the
// shared packages link no front end and not the facade.
func TestFrontEndsApart(t *testing.T) {
	all := deps(t, "./internal/proxy/...")
	upper := append([]string{"internal/proxy"}, frontEnds...)
	for _, pkg := range append(append([]string{}, frontEnds...), proxyLeaves...) {
		d, ok := all[pkg]
		if !ok {
			t.Errorf("package %s not found; update the lists", pkg)
			continue
		}
		for _, other := range upper {
			if other != pkg && slices.Contains(d, module+"/"+other) {
				t.Errorf("%s links %s; front ends and the packages they share never link a front end or the facade", pkg, other)
			}
		}
	}
}

// Package size bounds: a package over maxPackageLines holds more than one
// job; the facade only wires the parts together.
const (
	maxPackageLines = 3000
	maxFacadeLines  = 800
)

// TestPackageSize checks that no package of the module is over
// maxPackageLines of non-test Go, and the facade over maxFacadeLines.
func TestPackageSize(t *testing.T) {
	dir := root(t)
	lines := map[string]int{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && skipDir(path) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, filepath.Dir(path))
		lines[rel] += bytes.Count(b, []byte("\n"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for pkg, n := range lines {
		if n > maxPackageLines {
			t.Errorf("%s has %d lines of Go outside tests, want at most %d", pkg, n, maxPackageLines)
		}
	}
	if n := lines["internal/proxy"]; n == 0 || n > maxFacadeLines {
		t.Errorf("the facade internal/proxy has %d lines, want between 1 and %d", n, maxFacadeLines)
	}
}
