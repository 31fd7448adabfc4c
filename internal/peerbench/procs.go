package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xdpflow/xdpflow/internal/flowcheck"
)

// proc is a child process this program started. Each child gets its own
// process group (trafgen forks workers), and only those groups are ever
// signalled, by id.
type proc struct {
	name     string
	cmd      *exec.Cmd
	out      flowcheck.SyncBuffer
	done     chan struct{}
	err      error
	pgid     int
	timedOut bool // wait gave up and killed it
}

func (p *proc) killedOnTimeout() bool { return p.timedOut }

var (
	procsMu sync.Mutex
	procs   = map[*proc]bool{}
)

// start starts argv in its own process group and registers it for cleanup.
func start(name string, argv ...string) (*proc, error) {
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	procsMu.Lock()
	defer procsMu.Unlock()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.pgid = p.cmd.Process.Pid
	procs[p] = true
	go func() {
		p.err = p.cmd.Wait()
		procsMu.Lock()
		delete(procs, p)
		procsMu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// pid of the child: `ip netns exec` execs the command in place, so this is
// the probe's own pid.
func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the child to exit; on timeout its group is killed.
func (p *proc) wait(d time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		p.timedOut = true
		p.kill()
		<-p.done
		return fmt.Errorf("%s did not exit within %v: killed", p.name, d)
	}
}

// stop sends SIGTERM and waits up to d.
func (p *proc) stop(d time.Duration) error {
	if !p.exited() {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	return p.wait(d)
}

func (p *proc) kill() {
	if !p.exited() {
		syscall.Kill(-p.pgid, syscall.SIGKILL)
	}
}

// killAll kills every child still running (their process groups, by id).
func killAll() {
	procsMu.Lock()
	var ps []*proc
	for p := range procs {
		ps = append(ps, p)
	}
	procsMu.Unlock()
	for _, p := range ps {
		p.kill()
	}
	for _, p := range ps {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	}
}

// procTicks is utime+stime of pid (all its threads), in USER_HZ ticks.
func procTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64) // field 14
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return u + st, nil
}

// userHZ: the kernel reports /proc times in USER_HZ, 100 on Linux for
// every architecture Go supports (sysconf(_SC_CLK_TCK)).
const userHZ = 100
