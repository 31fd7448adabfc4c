package flowcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xdpflow/xdpflow/internal/syncbuf"
)

// ErrNoTshark is returned when tshark is not installed.
var ErrNoTshark = errors.New("tshark not installed (apt-get install tshark)")

// WritePcap writes each message as one UDP datagram 198.18.0.1 ->
// 198.18.0.2:dstPort, so Wireshark can read an export.
func WritePcap(path string, dstPort uint16, msgs [][]byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535+64, layers.LinkTypeEthernet); err != nil {
		return err
	}
	base := time.Now()
	for i, m := range msgs {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{198, 18, 0, 1}, DstIP: net.IP{198, 18, 0, 2}}
		udp := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(dstPort)}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			return err
		}
		buf := gopacket.NewSerializeBuffer()
		opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
		if err := gopacket.SerializeLayers(buf, opts, eth, ip, udp, gopacket.Payload(m)); err != nil {
			return err
		}
		ci := gopacket.CaptureInfo{Timestamp: base.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(buf.Bytes()), Length: len(buf.Bytes())}
		if err := w.WritePacket(ci, buf.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// Tshark has Wireshark's cflow dissector decode msgs (sent to dstPort) and
// returns its verbose output; an error names any malformed-packet or
// expert error/warning it reports.
func Tshark(dir string, dstPort uint16, msgs [][]byte) (string, error) {
	bin, err := exec.LookPath("tshark")
	if err != nil {
		return "", ErrNoTshark
	}
	path := filepath.Join(dir, fmt.Sprintf("export-%d.pcap", dstPort))
	if err := WritePcap(path, dstPort, msgs); err != nil {
		return "", err
	}
	out, err := exec.Command(bin, "-n", "-r", path, "-d", fmt.Sprintf("udp.port==%d,cflow", dstPort), "-V").CombinedOutput()
	text := string(out)
	if err != nil {
		return text, fmt.Errorf("tshark: %w", err)
	}
	for _, bad := range []string{"Malformed", "Expert Info (Error", "Expert Info (Warning"} {
		if i := strings.Index(text, bad); i >= 0 {
			return text, fmt.Errorf("tshark reports %q: %s", bad, text[max(0, i-300):min(len(text), i+200)])
		}
	}
	return text, nil
}

// TsharkFlows has Wireshark's cflow dissector decode msgs (sent to
// dstPort) and returns every flow record as Wireshark names its fields
// (cflow.srcaddr, cflow.pie.ntop.client_nw_latency_ms, ...), values as it
// prints them. Malformed packets are an error, as in Tshark.
func TsharkFlows(dir string, dstPort uint16, msgs [][]byte) ([]map[string]string, error) {
	if _, err := Tshark(dir, dstPort, msgs); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, fmt.Sprintf("export-%d.pcap", dstPort)) // written by Tshark
	out, err := exec.Command("tshark", "-n", "-r", path, "-d", fmt.Sprintf("udp.port==%d,cflow", dstPort), "-T", "json").Output()
	if err != nil {
		return nil, fmt.Errorf("tshark -T json: %w", err)
	}
	var pkts []struct {
		Source struct {
			Layers map[string]json.RawMessage `json:"layers"`
		} `json:"_source"`
	}
	if err := json.Unmarshal(out, &pkts); err != nil {
		return nil, fmt.Errorf("tshark -T json: %w", err)
	}
	var flows []map[string]string
	for _, p := range pkts {
		// cflow -> "Set N [id=...] (k flows)" -> "Flow k" -> fields.
		var sets map[string]json.RawMessage
		if err := json.Unmarshal(p.Source.Layers["cflow"], &sets); err != nil {
			return nil, fmt.Errorf("tshark -T json: cflow: %w", err)
		}
		for name, set := range sets {
			if !strings.HasPrefix(name, "Set ") || !strings.HasSuffix(name, " flows)") {
				continue
			}
			var recs map[string]json.RawMessage
			if err := json.Unmarshal(set, &recs); err != nil {
				return nil, fmt.Errorf("tshark -T json: %s: %w", name, err)
			}
			for name, rec := range recs {
				if !strings.HasPrefix(name, "Flow ") {
					continue
				}
				var fields map[string]any
				if err := json.Unmarshal(rec, &fields); err != nil {
					return nil, fmt.Errorf("tshark -T json: %s: %w", name, err)
				}
				f := map[string]string{}
				for k, v := range fields {
					if s, ok := v.(string); ok {
						f[k] = s
					}
				}
				flows = append(flows, f)
			}
		}
	}
	return flows, nil
}

// TsharkFields runs tshark over a capture file and returns, per packet
// that passes filter (a display filter, "" for all), the fields asked for
// (tab separated by tshark; a field a packet lacks is "").
func TsharkFields(pcap, filter string, fields ...string) ([][]string, error) {
	bin, err := exec.LookPath("tshark")
	if err != nil {
		return nil, ErrNoTshark
	}
	args := []string{"-n", "-r", pcap, "-T", "fields", "-E", "separator=/t"}
	if filter != "" {
		args = append(args, "-Y", filter)
	}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		return nil, fmt.Errorf("tshark -T fields: %w", err)
	}
	var rows [][]string
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if l != "" {
			rows = append(rows, strings.Split(l, "\t"))
		}
	}
	return rows, nil
}

// Capture is dumpcap (Wireshark's capture program, installed with
// tshark) writing what arrives on an interface into a pcap file: the
// wire's own times, for tests to check a probe's timing against.
type Capture struct {
	Path string
	cmd  *exec.Cmd
	out  syncbuf.Buffer
	done chan error
}

// StartCapture captures iface inside network namespace ns (an `ip netns`
// name) into a pcap file in dir, and returns once dumpcap captures.
func StartCapture(dir, ns, iface string) (*Capture, error) {
	if _, err := exec.LookPath("dumpcap"); err != nil {
		return nil, fmt.Errorf("dumpcap not installed (apt-get install tshark): %w", err)
	}
	c := &Capture{Path: filepath.Join(dir, iface+".pcap"), done: make(chan error, 1)}
	// -P: pcap, not pcapng, so gopacket's pcapgo reads it.
	c.cmd = exec.Command("ip", "netns", "exec", ns, "dumpcap", "-q", "-P", "-i", iface, "-w", c.Path)
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("dumpcap: %w", err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(c.out.String(), "Capturing on"); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-c.done:
			c.done <- err
			return nil, fmt.Errorf("dumpcap exited (%v): %s", err, c.out.String())
		default:
		}
		if time.Now().After(deadline) {
			c.Stop()
			return nil, fmt.Errorf("dumpcap did not start: %s", c.out.String())
		}
	}
	return c, nil
}

// Stop ends the capture; calling it again does nothing. dumpcap gets
// packets from the kernel in blocks handed over at its read timeout
// (250 ms) and drops the block in hand at SIGTERM, so Stop first waits
// for that.
func (c *Capture) Stop() error {
	select {
	case err := <-c.done:
		c.done <- err
		return nil
	default:
	}
	time.Sleep(600 * time.Millisecond)
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		c.done <- err
		return nil
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		return fmt.Errorf("dumpcap did not stop: %s", c.out.String())
	}
}
