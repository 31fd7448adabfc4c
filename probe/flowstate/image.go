package flowstate

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net/netip"
	"unsafe"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/probe/flowtable"
	"github.com/xdpflow/xdpflow/schemas"
)

// Image is the state one tick leaves.
type Image struct {
	Tick uint64
	// QuietTable is the kernel's id of the table this tick drained
	// (bpf.Datapath.TableID): until it is emptied (Cleared) its flows are
	// both there and in Flows, so a restart empties it before anything.
	QuietTable uint32
	Cleared    bool // from the head (Load)
	Flows      []flowtable.Held
	// Pending are the records some exporter has not settled, oldest first.
	Pending []schemas.Flow
	// Exporters are the exporters' names; Settled[i] is how many of
	// Pending exporter i has settled (the rest it still needs).
	Exporters []string
	Settled   []uint64
}

const (
	imageMagic = 0x31474d4953465800 // "\0XFSIMG1"
	// The kernel's key and value are stored as they are in memory: the
	// state never leaves this machine, and their sizes are in the image,
	// so another layout is refused rather than misread.
	keyLen    = int(unsafe.Sizeof(bpf.FlowKey{}))
	valueLen  = int(unsafe.Sizeof(bpf.FlowValue{}))
	heldLen   = keyLen + valueLen + 8
	recordLen = 2*17 + 2 + 2 + 1 + 1 + 2 + 4 + 3*8 + 2*8 + 2 + 1 + 1 + 1 + 3*8 + 2*8 + 2 +
		1 + 1 + 2*6 + 4 + 4 + 4*schemas.MaxMplsLabels + 2*17 + // the encapsulation
		3*8 + 3*4 // TCP health
)

var le = binary.LittleEndian

func (img *Image) encode() []byte {
	n := 8 + 8*5
	for _, x := range img.Exporters {
		n += 2 + len(x)
	}
	n += len(img.Flows)*heldLen + len(img.Pending)*recordLen + 4
	b := make([]byte, 0, n)
	b = le.AppendUint64(b, imageMagic)
	b = le.AppendUint64(b, img.Tick)
	b = le.AppendUint64(b, uint64(img.QuietTable))
	b = le.AppendUint64(b, uint64(keyLen)<<32|uint64(valueLen)<<16|uint64(recordLen))
	b = le.AppendUint64(b, uint64(len(img.Exporters)))
	for _, x := range img.Exporters {
		b = le.AppendUint16(b, uint16(len(x)))
		b = append(b, x...)
	}
	b = le.AppendUint64(b, uint64(len(img.Flows))<<32|uint64(len(img.Pending)))
	for i := range img.Flows {
		h := &img.Flows[i]
		b = append(b, unsafe.Slice((*byte)(unsafe.Pointer(&h.Key)), keyLen)...)
		b = append(b, unsafe.Slice((*byte)(unsafe.Pointer(&h.Value)), valueLen)...)
		b = le.AppendUint64(b, h.LastSeen)
	}
	for i := range img.Pending {
		b = appendRecord(b, &img.Pending[i])
	}
	return le.AppendUint32(b, crc32.ChecksumIEEE(b))
}

func decode(b []byte) (*Image, error) {
	bad := func(why string) (*Image, error) { return nil, fmt.Errorf("%w: image: %s", ErrIncompatible, why) }
	if len(b) < 8*6+4 {
		return bad("too short")
	}
	if crc32.ChecksumIEEE(b[:len(b)-4]) != le.Uint32(b[len(b)-4:]) {
		return bad("checksum")
	}
	b = b[:len(b)-4]
	if le.Uint64(b) != imageMagic {
		return bad("magic")
	}
	img := &Image{Tick: le.Uint64(b[8:]), QuietTable: uint32(le.Uint64(b[16:]))}
	if le.Uint64(b[24:]) != uint64(keyLen)<<32|uint64(valueLen)<<16|uint64(recordLen) {
		return bad("another flow layout")
	}
	nx := le.Uint64(b[32:])
	b = b[40:]
	if nx > MaxExporters {
		return bad("exporters")
	}
	for range nx {
		if len(b) < 2 || len(b) < 2+int(le.Uint16(b)) {
			return bad("exporter name")
		}
		l := int(le.Uint16(b))
		img.Exporters = append(img.Exporters, string(b[2:2+l]))
		b = b[2+l:]
	}
	if len(b) < 8 {
		return bad("counts")
	}
	nf, np := int(le.Uint64(b)>>32), int(uint32(le.Uint64(b)))
	b = b[8:]
	if len(b) != nf*heldLen+np*recordLen {
		return bad("length")
	}
	img.Flows = make([]flowtable.Held, nf)
	for i := range img.Flows {
		h := &img.Flows[i]
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&h.Key)), keyLen), b)
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&h.Value)), valueLen), b[keyLen:])
		h.LastSeen = le.Uint64(b[keyLen+valueLen:])
		b = b[heldLen:]
	}
	img.Pending = make([]schemas.Flow, np)
	for i := range img.Pending {
		readRecord(b, &img.Pending[i])
		b = b[recordLen:]
	}
	return img, nil
}

// appendRecord writes every field of a schemas.Flow (TestRecordRoundTrip
// fails when the struct gains one this misses).
func appendRecord(b []byte, f *schemas.Flow) []byte {
	b = appendAddr(b, f.SrcAddr)
	b = appendAddr(b, f.DstAddr)
	b = le.AppendUint16(b, f.SrcPort)
	b = le.AppendUint16(b, f.DstPort)
	b = append(b, f.Proto, f.IpTos)
	b = le.AppendUint16(b, f.VlanId)
	b = le.AppendUint32(b, f.InIf)
	b = le.AppendUint64(b, f.Packets)
	b = le.AppendUint64(b, f.Bytes)
	b = le.AppendUint64(b, f.L2Bytes)
	b = le.AppendUint64(b, uint64(f.TimeFlowStartNs))
	b = le.AppendUint64(b, uint64(f.TimeFlowEndNs))
	b = le.AppendUint16(b, f.TcpFlags)
	b = append(b, byte(f.EndReason), byte(f.FlowDirection), boolByte(f.Biflow))
	b = le.AppendUint64(b, f.ReversePackets)
	b = le.AppendUint64(b, f.ReverseBytes)
	b = le.AppendUint64(b, f.ReverseL2Bytes)
	b = le.AppendUint64(b, uint64(f.ReverseTimeFlowStartNs))
	b = le.AppendUint64(b, uint64(f.ReverseTimeFlowEndNs))
	b = le.AppendUint16(b, f.ReverseTcpFlags)
	b = append(b, byte(f.TunnelType), byte(f.MirrorType))
	b = append(append(b, f.SrcMac[:]...), f.DstMac[:]...)
	b = le.AppendUint32(b, f.TunnelId)
	b = le.AppendUint32(b, f.ObservationPointId)
	for _, l := range f.MplsLabels {
		b = le.AppendUint32(b, l)
	}
	b = appendAddr(b, f.TunnelSrcAddr)
	b = appendAddr(b, f.TunnelDstAddr)
	b = le.AppendUint64(b, f.ClientNwDelayNs)
	b = le.AppendUint64(b, f.ServerNwDelayNs)
	b = le.AppendUint64(b, f.ApplLatencyNs)
	b = le.AppendUint32(b, f.TcpRetransmitted)
	b = le.AppendUint32(b, f.TcpOutOfOrder)
	return le.AppendUint32(b, f.TcpZeroWindow)
}

func readRecord(b []byte, f *schemas.Flow) {
	f.SrcAddr = readAddr(b)
	f.DstAddr = readAddr(b[17:])
	b = b[34:]
	f.SrcPort, f.DstPort = le.Uint16(b), le.Uint16(b[2:])
	f.Proto, f.IpTos = b[4], b[5]
	f.VlanId, f.InIf = le.Uint16(b[6:]), le.Uint32(b[8:])
	f.Packets, f.Bytes, f.L2Bytes = le.Uint64(b[12:]), le.Uint64(b[20:]), le.Uint64(b[28:])
	f.TimeFlowStartNs, f.TimeFlowEndNs = int64(le.Uint64(b[36:])), int64(le.Uint64(b[44:]))
	f.TcpFlags = le.Uint16(b[52:])
	f.EndReason, f.FlowDirection, f.Biflow = schemas.EndReason(b[54]), schemas.Direction(b[55]), b[56] != 0
	f.ReversePackets, f.ReverseBytes, f.ReverseL2Bytes = le.Uint64(b[57:]), le.Uint64(b[65:]), le.Uint64(b[73:])
	f.ReverseTimeFlowStartNs, f.ReverseTimeFlowEndNs = int64(le.Uint64(b[81:])), int64(le.Uint64(b[89:]))
	f.ReverseTcpFlags = le.Uint16(b[97:])
	b = b[99:]
	f.TunnelType, f.MirrorType = schemas.TunnelType(b[0]), schemas.MirrorType(b[1])
	f.SrcMac, f.DstMac = schemas.MAC(b[2:8]), schemas.MAC(b[8:14])
	f.TunnelId, f.ObservationPointId = le.Uint32(b[14:]), le.Uint32(b[18:])
	for i := range f.MplsLabels {
		f.MplsLabels[i] = le.Uint32(b[22+4*i:])
	}
	b = b[22+4*schemas.MaxMplsLabels:]
	f.TunnelSrcAddr, f.TunnelDstAddr = readAddr(b), readAddr(b[17:])
	b = b[34:]
	f.ClientNwDelayNs, f.ServerNwDelayNs, f.ApplLatencyNs = le.Uint64(b), le.Uint64(b[8:]), le.Uint64(b[16:])
	f.TcpRetransmitted, f.TcpOutOfOrder, f.TcpZeroWindow = le.Uint32(b[24:]), le.Uint32(b[28:]), le.Uint32(b[32:])
}

// An address is its length (0, 4 or 16) and 16 bytes.
func appendAddr(b []byte, a netip.Addr) []byte {
	l := byte(0)
	if a.IsValid() {
		l = byte(a.BitLen() / 8)
	}
	s := a.As16()
	if !a.IsValid() {
		s = [16]byte{}
	}
	return append(append(b, l), s[:]...)
}

func readAddr(b []byte) netip.Addr {
	a := netip.AddrFrom16([16]byte(b[1:17]))
	switch b[0] {
	case 4:
		return a.Unmap()
	case 16:
		return a
	}
	return netip.Addr{}
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}
