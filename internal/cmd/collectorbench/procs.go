package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/xdpflow/xdpflow/internal/cmd/benchproc"
)

// procCPU is utime+stime of pid (all its threads), in seconds.
func procCPU(pid int) (float64, error) {
	t, err := benchproc.CPUTicks(pid)
	return float64(t) / benchproc.UserHZ, err
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

// waitUDP waits until a socket is bound to port, or the child exits.
func waitUDP(p *benchproc.Proc, port int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if p.Exited() {
			return fmt.Errorf("%s exited: %v\n%s", p.Name, p.Err(), p.Out.String())
		}
		if s, err := readUDPSocket(port); err == nil && s.found {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s: nothing bound to udp port %d after %v\n%s", p.Name, port, d, p.Out.String())
}

// cpuBusy is the busy time of some CPUs so far (user, nice, system, irq,
// softirq and steal from /proc/stat), in seconds.
func cpuBusy(cpus []int) (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	var busy uint64
	for _, cpu := range cpus {
		prefix := fmt.Sprintf("cpu%d ", cpu)
		found := false
		for line := range strings.SplitSeq(string(b), "\n") {
			if !strings.HasPrefix(line, prefix) {
				continue
			}
			found = true
			for i, v := range strings.Fields(line)[1:] {
				if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is in user already
					continue
				}
				n, _ := strconv.ParseUint(v, 10, 64)
				busy += n
			}
			break
		}
		if !found {
			return 0, fmt.Errorf("/proc/stat: no %s line", prefix)
		}
	}
	return float64(busy) / benchproc.UserHZ, nil
}
