// Package benchproc runs and measures the child processes of the
// benchmark programs (peerbench, collectorbench): each child in its own
// process group, signalled only by that group's id; CPU time from /proc;
// pinning to a CPU.
package benchproc

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpflow/xdpflow/internal/syncbuf"
)

// Proc is a child process this program started.
type Proc struct {
	Name string
	// Out collects its stdout and stderr.
	Out syncbuf.Buffer

	cmd      *exec.Cmd
	done     chan struct{}
	err      error
	timedOut bool
}

var (
	mu    sync.Mutex
	procs = map[*Proc]bool{}
)

// Start starts argv, with env added to this process's environment, in its
// own process group, registered for KillAll (the programs call it on
// SIGINT, SIGTERM and every way out).
func Start(name string, env []string, argv ...string) (*Proc, error) {
	return StartIn("", name, env, argv...)
}

// StartIn is Start with the child's working directory dir ("": this
// process's): a test binary runs in its package's directory.
func StartIn(dir, name string, env []string, argv ...string) (*Proc, error) {
	p := &Proc{Name: name, done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Dir = dir
	if len(env) > 0 {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.Out, &p.Out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	mu.Lock()
	defer mu.Unlock()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	procs[p] = true
	go func() {
		p.err = p.cmd.Wait()
		mu.Lock()
		delete(procs, p)
		mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// PID of the child (`ip netns exec` and taskset exec in place: it is the
// program's own).
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited tells whether the child has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the child ended (nil while it runs).
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Wait waits up to d for the child to exit; on timeout its group is killed.
func (p *Proc) Wait(d time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		p.timedOut = true
		p.Kill()
		return fmt.Errorf("%s did not exit within %v: killed", p.Name, d)
	}
}

// Stop sends SIGTERM and waits up to d.
func (p *Proc) Stop(d time.Duration) error {
	if !p.Exited() {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	return p.Wait(d)
}

// Signal sends sig to the child alone, not its group: a daemon that
// forks workers (pmacctd) stops them itself, as under a service manager.
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s: %w", p.Name, err)
	}
	return nil
}

// KilledOnTimeout tells whether Wait gave up and killed it.
func (p *Proc) KilledOnTimeout() bool { return p.timedOut }

// Kill kills the child's process group (by its id) and waits for it.
func (p *Proc) Kill() {
	if !p.Exited() {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// Main runs a benchmark program's run and exits: every child still
// running is killed first, also when SIGINT, SIGTERM or SIGHUP ends the
// program early (status 130); a run error is printed after name, status 1.
func Main(name string, run func() error) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "%s: %v: stopping its child processes\n", name, s)
		KillAll()
		os.Exit(130)
	}()
	err := run()
	KillAll()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// KillAll kills every child still running.
func KillAll() {
	mu.Lock()
	var ps []*Proc
	for p := range procs {
		ps = append(ps, p)
	}
	mu.Unlock()
	for _, p := range ps {
		p.Kill()
	}
}

// UserHZ: /proc times are in USER_HZ ticks, 100 on every Linux Go runs on
// (sysconf(_SC_CLK_TCK)).
const UserHZ = 100

// CPUTicks is utime+stime of pid (all its threads), in USER_HZ ticks.
func CPUTicks(pid int) (uint64, error) {
	st, err := readStat(pid)
	return st.ticks, err
}

// TreeCPUTicks is CPUTicks summed over pid and every process descended
// from it: a daemon that forks its workers (pmacctd's plugins) is charged
// for them while they run (a child's time reaches its parent's cutime
// only once it has exited and been waited for).
func TreeCPUTicks(pid int) (uint64, error) {
	root, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	children := map[int][]procStat{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == pid {
			continue
		}
		st, err := readStat(p)
		if err != nil {
			continue // exited since the listing
		}
		children[st.ppid] = append(children[st.ppid], st)
	}
	sum := uint64(0)
	for queue := []procStat{root}; len(queue) > 0; queue = queue[1:] {
		sum += queue[0].ticks
		queue = append(queue, children[queue[0].pid]...)
	}
	return sum, nil
}

// procStat is what CPUTicks and TreeCPUTicks read of /proc/<pid>/stat.
type procStat struct {
	pid, ppid int
	ticks     uint64 // utime+stime
}

func readStat(pid int) (procStat, error) {
	st := procStat{pid: pid}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold anything
	if i < 0 {
		return st, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return st, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	pp, err0 := strconv.Atoi(f[1])               // field 4 ppid
	u, err1 := strconv.ParseUint(f[11], 10, 64)  // field 14 utime
	sy, err2 := strconv.ParseUint(f[12], 10, 64) // field 15 stime
	if err0 != nil || err1 != nil || err2 != nil {
		return st, fmt.Errorf("/proc/%d/stat: bad ppid, utime or stime", pid)
	}
	st.ppid, st.ticks = pp, u+sy
	return st, nil
}

// CPUSet is the set of one CPU.
func CPUSet(cpu int) *unix.CPUSet {
	var s unix.CPUSet
	s.Set(cpu)
	return &s
}

// PinSelf moves every thread of this process to cpu; threads created
// later inherit the mask from the thread that creates them, children too.
func PinSelf(cpu int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, CPUSet(cpu)); err != nil && err != unix.ESRCH {
			return fmt.Errorf("pin thread %d to CPU %d: %w", tid, cpu, err)
		}
	}
	return nil
}
