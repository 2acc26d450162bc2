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

func TestDockerfileBuildsAStaticBinary(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var build string
	var stages []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "FROM ") {
			stages = append(stages, line)
		}
		if strings.HasPrefix(line, "RUN ") && strings.Contains(line, "go build") {
			build = strings.TrimPrefix(line, "RUN ")
		}
	}
	if build == "" {
		t.Fatal("no RUN ... go build line in the Dockerfile")
	}
	if len(stages) != 2 || !strings.Contains(stages[0], "golang:1.") || !strings.Contains(stages[1], "distroless/static") || !strings.Contains(stages[1], "nonroot") {
		t.Errorf("stages %q: want a pinned golang build stage and a distroless static nonroot final stage", stages)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/shard-proxy", "-o /out/shard-proxy"} {
		if !strings.Contains(build, want) {
			t.Errorf("build line %q lacks %s", build, want)
		}
	}
	out := t.TempDir()
	cmd := exec.Command("sh", "-c", strings.ReplaceAll(build, "/out/", out+"/"))
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", build, err, b)
	}
	bin, err := elf.Open(filepath.Join(out, "shard-proxy"))
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	for _, p := range bin.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary asks for a dynamic loader; distroless/static needs a static binary")
		}
	}
	if b, err := exec.Command(filepath.Join(out, "shard-proxy"), "--help").CombinedOutput(); err != nil || !strings.Contains(string(b), "shard-proxy routes") {
		t.Errorf("the built binary does not run: %v\n%s", err, b)
	}
}
