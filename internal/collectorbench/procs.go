package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// syncBuffer collects a child's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a child this program started, in its own process group. Only
// that group is ever signalled, by id.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  syncBuffer
	done chan struct{}
	err  error
}

var (
	procsMu sync.Mutex
	procs   = map[*proc]bool{}
)

func startProc(name string, env []string, argv ...string) (*proc, error) {
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	procsMu.Lock()
	defer procsMu.Unlock()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
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

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to d, then kills the group.
func (p *proc) stop(d time.Duration) error {
	if !p.exited() {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		p.kill()
		return fmt.Errorf("%s did not exit within %v of SIGTERM: killed", p.name, d)
	}
}

// kill kills the child's process group (by its id) and waits for it.
func (p *proc) kill() {
	if !p.exited() {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// killAll kills every child still running.
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
}

// userHZ: /proc times are in USER_HZ ticks, 100 on every Linux Go runs on.
const userHZ = 100

// procCPU is utime+stime of pid (all its threads), in seconds.
func procCPU(pid int) (float64, error) {
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
	u, err1 := strconv.ParseUint(f[11], 10, 64)  // field 14 utime
	st, err2 := strconv.ParseUint(f[12], 10, 64) // field 15 stime
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return float64(u+st) / userHZ, nil
}

// udpSocket is one line of /proc/net/udp.
type udpSocket struct {
	found bool
	drops uint64 // the last column: datagrams the socket had no room for
	rxQ   uint64 // bytes queued
}

// readUDPSocket finds the IPv4 UDP socket bound to port (the collectors
// listen on 127.0.0.1; goflow2 through go-reuseport binds an IPv4 socket
// for a "127.0.0.1" address).
func readUDPSocket(port int) (udpSocket, error) {
	var out udpSocket
	for _, file := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		f, err := os.Open(file)
		if err != nil {
			return out, err
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 13 {
				continue
			}
			local := fs[1]
			c := strings.LastIndexByte(local, ':')
			p, err := strconv.ParseUint(local[c+1:], 16, 32)
			if err != nil || int(p) != port {
				continue
			}
			out.found = true
			d, _ := strconv.ParseUint(fs[len(fs)-1], 10, 64)
			out.drops += d
			q := fs[4] // tx_queue:rx_queue
			if c := strings.IndexByte(q, ':'); c >= 0 {
				r, _ := strconv.ParseUint(q[c+1:], 16, 64)
				out.rxQ += r
			}
		}
		f.Close()
	}
	return out, nil
}

// snmpUDP reads the Udp: RcvbufErrors and InErrors counters of
// /proc/net/snmp (whole system).
func snmpUDP() (rcvbuf, inErr uint64, err error) {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0, 0, err
	}
	var names []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.HasPrefix(line, "Udp: ") {
			continue
		}
		fs := strings.Fields(line)[1:]
		if names == nil {
			names = fs
			continue
		}
		for i, v := range fs {
			n, _ := strconv.ParseUint(v, 10, 64)
			switch names[i] {
			case "RcvbufErrors":
				rcvbuf = n
			case "InErrors":
				inErr = n
			}
		}
		break
	}
	return rcvbuf, inErr, nil
}

// freePort returns a port no one listens on at the moment for network.
func freePort(network string) (int, error) {
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	default:
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
}

// waitUDP waits until a socket is bound to port, or the child exits.
func waitUDP(p *proc, port int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.out.String())
		}
		if s, err := readUDPSocket(port); err == nil && s.found {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s: nothing bound to udp port %d after %v\n%s", p.name, port, d, p.out.String())
}

func cpuSet(cpu int) *unix.CPUSet {
	var s unix.CPUSet
	s.Set(cpu)
	return &s
}

// pinSelf moves every thread of this process to cpu; threads created
// later inherit the mask from the thread that creates them.
func pinSelf(cpu int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, cpuSet(cpu)); err != nil && err != unix.ESRCH {
			return fmt.Errorf("pin thread %d to CPU %d: %w", tid, cpu, err)
		}
	}
	return nil
}

// cpuBusy is the busy time of one CPU so far (user, nice, system, irq,
// softirq and steal from /proc/stat), in seconds.
func cpuBusy(cpu int) (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	prefix := fmt.Sprintf("cpu%d ", cpu)
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		fs := strings.Fields(line)[1:]
		var busy uint64
		for i, v := range fs {
			if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is in user already
				continue
			}
			n, _ := strconv.ParseUint(v, 10, 64)
			busy += n
		}
		return float64(busy) / userHZ, nil
	}
	return 0, fmt.Errorf("/proc/stat: no %s line", prefix)
}
