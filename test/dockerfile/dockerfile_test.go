// Package dockerfile checks the Dockerfile's build stage without a Docker
// engine: it runs the stage's `go build` line, as written, on this checkout.
package dockerfile

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// dockerfile is what the tests read from the Dockerfile: its FROM lines and
// the build stage's go build command.
type dockerfile struct {
	stages []string
	build  string
}

// readDockerfile reads the Dockerfile at the module root, the directory it
// returns with it.
func readDockerfile(t *testing.T) (dockerfile, string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var d dockerfile
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "FROM ") {
			d.stages = append(d.stages, line)
		}
		if strings.HasPrefix(line, "RUN ") && strings.Contains(line, "go build") {
			d.build = strings.TrimPrefix(line, "RUN ")
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if d.build == "" {
		t.Fatal("no RUN ... go build line in the Dockerfile")
	}
	return d, root
}

// TestDockerfileStages checks the Dockerfile's shape, which needs no build
// and so runs under -short too.
func TestDockerfileStages(t *testing.T) {
	d, _ := readDockerfile(t)
	if len(d.stages) != 2 || !strings.Contains(d.stages[0], "golang:1.") || !strings.Contains(d.stages[1], "distroless/static") || !strings.Contains(d.stages[1], "nonroot") {
		t.Errorf("stages %q: want a pinned golang build stage and a distroless static nonroot final stage", d.stages)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/shard-proxy", "-o /out/shard-proxy"} {
		if !strings.Contains(d.build, want) {
			t.Errorf("build line %q lacks %s", d.build, want)
		}
	}
}

// TestDockerfileBuildsAStaticBinary runs the build line and checks that its
// binary is static and runs.
func TestDockerfileBuildsAStaticBinary(t *testing.T) {
	if testing.Short() {
		// The build line's flags (-trimpath, CGO_ENABLED=0) match no other
		// build of the tree, so unless the build cache already holds its
		// result it compiles the binary and every dependency afresh:
		// minutes on two cores, most of a short run.
		t.Skip("-short: building the binary as the Dockerfile does takes minutes on a cold build cache; TestDockerfileStages still checks the build line")
	}
	d, root := readDockerfile(t)
	out := t.TempDir()
	cmd := exec.Command("sh", "-c", strings.ReplaceAll(d.build, "/out/", out+"/"))
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", d.build, err, b)
	}
	bin := filepath.Join(out, "shard-proxy")
	checkStatic(t, bin)
	if b, err := exec.Command(bin, "--help").CombinedOutput(); err != nil || !strings.Contains(string(b), "shard-proxy routes") {
		t.Errorf("the built binary does not run: %v\n%s", err, b)
	}
}

// checkStatic fails t if the ELF binary at path asks for a dynamic loader,
// which the distroless static image does not have.
func checkStatic(t *testing.T, path string) {
	t.Helper()
	bin, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	for _, p := range bin.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary asks for a dynamic loader; distroless/static needs a static binary")
		}
	}
}
