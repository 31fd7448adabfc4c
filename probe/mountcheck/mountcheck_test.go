package mountcheck

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xdpflow/xdpflow/bpf"
)

// The test binary doubles as a helper run in another mount namespace:
// with MOUNTCHECK_HELPER set it makes the mounts that variable lists
// ("bpf=DIR", "tmpfs=DIR", or "ensure=DIR" for bpf.EnsureBPFFS(DIR), one
// per line), then prints Outlives of each path in MOUNTCHECK_PATHS (one
// per line) as a JSON result per line.
func TestMain(m *testing.M) {
	if spec, ok := os.LookupEnv("MOUNTCHECK_HELPER"); ok {
		if err := helper(spec, os.Getenv("MOUNTCHECK_PATHS")); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type result struct {
	Path string
	OK   bool
	Why  string
	Err  string
}

func helper(spec, paths string) error {
	for _, line := range lines(spec) {
		kind, dir, _ := strings.Cut(line, "=")
		var err error
		switch kind {
		case "bpf", "tmpfs":
			err = unix.Mount(kind, dir, kind, 0, "")
		case "ensure":
			err = bpf.EnsureBPFFS(dir)
		default:
			err = fmt.Errorf("unknown mount %q", line)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", line, err)
		}
	}
	enc := json.NewEncoder(os.Stdout)
	for _, p := range lines(paths) {
		ok, why, err := Outlives(p)
		r := result{Path: p, OK: ok, Why: why}
		if err != nil {
			r.Err = err.Error()
		}
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// runHelper runs this test binary as the helper through cmd (whose Args
// get the binary appended) and returns its results by path.
func runHelper(t *testing.T, cmd *exec.Cmd, mounts, paths []string) map[string]result {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Args = append(cmd.Args, self, "-test.run=^$")
	if cmd.Path == "" {
		cmd.Path = self
	}
	cmd.Env = append(os.Environ(), "MOUNTCHECK_HELPER="+strings.Join(mounts, "\n"), "MOUNTCHECK_PATHS="+strings.Join(paths, "\n"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, stderr.Bytes())
	}
	res := map[string]result{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var r result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("helper output %q: %v", sc.Text(), err)
		}
		res[r.Path] = r
		t.Logf("%s: ok=%v why=%q err=%q", r.Path, r.OK, r.Why, r.Err)
	}
	if len(res) != len(paths) {
		t.Fatalf("helper gave %d results for %d paths:\n%s\n%s", len(res), len(paths), out, stderr.Bytes())
	}
	return res
}

func check(t *testing.T, r result, want bool, whyHas string) {
	t.Helper()
	if r.Err != "" {
		t.Errorf("%s: %s", r.Path, r.Err)
	}
	if r.OK != want {
		t.Errorf("%s: ok=%v, want %v (why %q)", r.Path, r.OK, want, r.Why)
	}
	if !strings.Contains(r.Why, whyHas) {
		t.Errorf("%s: why %q does not say %q", r.Path, r.Why, whyHas)
	}
}

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts in a new mount namespace")
	}
}

func TestHostPaths(t *testing.T) {
	dir := t.TempDir()
	paths := []string{dir, filepath.Join(dir, "not", "yet"), "relative/not/yet"}
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/bpf", &st) == nil && st.Type == unix.BPF_FS_MAGIC {
		paths = append(paths, "/sys/fs/bpf/xdpflow/eth0")
	}
	for _, p := range paths {
		ok, why, err := Outlives(p)
		t.Logf("%s: ok=%v why=%q err=%v", p, ok, why, err)
		check(t, result{Path: p, OK: ok, Why: why, Err: errString(err)}, true, "PID 1")
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestPrivateNamespace mounts a bpffs and a tmpfs in a new mount
// namespace of its own (as `unshare -m` would, private propagation): they
// die with it. /tmp there is still the host's filesystem.
func TestPrivateNamespace(t *testing.T) {
	needRoot(t)
	bpffs, tmpfs := t.TempDir(), t.TempDir()
	host := t.TempDir()
	cmd := &exec.Cmd{SysProcAttr: &syscall.SysProcAttr{Unshareflags: unix.CLONE_NEWNS}} // Go makes / private too
	pinPath, state := filepath.Join(bpffs, "xdpflow", "eth0"), filepath.Join(tmpfs, "xdpflow", "eth0")
	res := runHelper(t, cmd, []string{"bpf=" + bpffs, "tmpfs=" + tmpfs}, []string{bpffs, pinPath, state, host})
	check(t, res[bpffs], false, "bpf at "+bpffs)
	check(t, res[pinPath], false, "only in this process's private mount namespace")
	check(t, res[state], false, "tmpfs at "+tmpfs)
	check(t, res[host], true, "also mounted at / in PID 1's")
}

// TestIPNetnsExec runs the helper under `ip netns exec`, which mounts a
// private /sys; the helper mounts bpffs on /sys/fs/bpf as the probe does
// (bpf.EnsureBPFFS). Run under flock /tmp/xdpflow-netns.lock.
func TestIPNetnsExec(t *testing.T) {
	needRoot(t)
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("no ip command")
	}
	name := fmt.Sprintf("xfmc%d", os.Getpid())
	if out, err := exec.Command(ip, "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(ip, "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	pinPath := "/sys/fs/bpf/xdpflow/eth0"
	host := t.TempDir()
	res := runHelper(t, exec.Command(ip, "netns", "exec", name), []string{"ensure=" + pinPath}, []string{pinPath, host})
	check(t, res[pinPath], false, "bpf at /sys/fs/bpf")
	check(t, res[pinPath], false, "ip netns exec")
	check(t, res[host], true, "PID 1")
}

// TestUnreadable: without PID 1's mount table there is no answer, and no
// alarm either.
func TestUnreadable(t *testing.T) {
	defer func(s string) { initMountinfo = s }(initMountinfo)
	initMountinfo = filepath.Join(t.TempDir(), "none")
	ok, why, err := Outlives(t.TempDir())
	if !ok || err == nil {
		t.Errorf("ok=%v why=%q err=%v, want true and an error", ok, why, err)
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/a\040b`:   "/a b",
		`/x\011`:    "/x\t",
		`/plain`:    "/plain",
		`/short\04`: `/short\04`,
		`/back\134`: `/back\`,
	} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}
