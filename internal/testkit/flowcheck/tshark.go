package flowcheck

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
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
