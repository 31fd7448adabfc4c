// Package internal_test keeps internal/ sorted by role: programs (package
// main) and their helpers under internal/cmd/, test kits under
// internal/testkit/, libraries beside them.
package internal_test

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/xdpflow/xdpflow"

// TestLayout: only the programs under internal/cmd/ may depend on probe/
// or collector/ (libraries and test kits are what those build on); nothing
// outside internal/cmd/ imports it; every program is under it.
func TestLayout(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	// One line a package: path, name, then every dependency (transitive)
	// and every import of its tests.
	cmd := exec.Command(gobin, "list", "-f",
		`{{.ImportPath}} {{.Name}} {{join .Deps " "}} {{join .TestImports " "}} {{join .XTestImports " "}}`, "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var n int
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		pkg, name, deps := f[0], f[1], f[2:]
		n++
		inCmd := strings.HasPrefix(pkg, module+"/internal/cmd/")
		program := inCmd && name == "main"
		if name == "main" && !inCmd {
			t.Errorf("%s is a program: it belongs under internal/cmd/", pkg)
		}
		for _, d := range deps {
			switch {
			case !program && (under(d, module+"/probe") || under(d, module+"/collector")):
				t.Errorf("%s depends on %s: only the programs under internal/cmd/ may use probe/ and collector/", pkg, d)
			case !inCmd && under(d, module+"/internal/cmd"):
				t.Errorf("%s depends on %s: libraries and test kits do not use the programs or their helpers", pkg, d)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("go list found %d packages under internal/: not run from internal/?", n)
	}
	statSources(t)
}

// statSources looks at every Go file of the module, so that go test's
// cache, which sees what this process reads but not what go list reads,
// runs the test again when any of them changes.
func statSources(t *testing.T) {
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".go") || d.Name() == "go.mod") {
			_, err = os.Stat(path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func under(path, root string) bool { return path == root || strings.HasPrefix(path, root+"/") }
