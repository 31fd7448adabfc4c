package schemas

import (
	"encoding/binary"
	"fmt"
	"net"
)

// TunnelType is what carried a flow (flow.proto's TunnelType; the
// datapath's enum tunnel_type has the same numbers).
type TunnelType uint8

const (
	TunnelNone   TunnelType = 0
	TunnelMPLS   TunnelType = 1 // TunnelId: top label (20 bits)
	TunnelPPPoE  TunnelType = 2 // TunnelId: session id
	TunnelGRE    TunnelType = 3 // TunnelId: GRE key
	TunnelIPIP   TunnelType = 4 // TunnelId: 0
	TunnelVXLAN  TunnelType = 5 // TunnelId: VNI
	TunnelGeneve TunnelType = 6 // TunnelId: VNI
	TunnelGTPU   TunnelType = 7 // TunnelId: TEID
)

var tunnelNames = []string{"none", "mpls", "pppoe", "gre", "ipip", "vxlan", "geneve", "gtpu"}

func (t TunnelType) String() string { return enumName(tunnelNames, t) }

// MarshalText writes the type's name in JSON.
func (t TunnelType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText reads a name written by MarshalText.
func (t *TunnelType) UnmarshalText(b []byte) error {
	return parseEnum(tunnelNames, t, b, "tunnel type")
}

// MirrorType is how a mirrored frame reached the probe (flow.proto's
// MirrorType; the datapath's enum mirror_type).
type MirrorType uint8

const (
	MirrorNone   MirrorType = 0
	MirrorERSPAN MirrorType = 1 // ObservationPointId: session id
	MirrorVXLAN  MirrorType = 2 // ObservationPointId: VNI
	MirrorGeneve MirrorType = 3 // ObservationPointId: VNI
	MirrorTZSP   MirrorType = 4 // ObservationPointId: 0
)

var mirrorNames = []string{"none", "erspan", "vxlan", "geneve", "tzsp"}

func (t MirrorType) String() string { return enumName(mirrorNames, t) }

// MarshalText writes the type's name in JSON.
func (t MirrorType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText reads a name written by MarshalText.
func (t *MirrorType) UnmarshalText(b []byte) error {
	return parseEnum(mirrorNames, t, b, "mirror type")
}

// enumName is v's name, or its number for a value a newer writer knows.
func enumName[T ~uint8](names []string, v T) string {
	if int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprint(uint8(v))
}

func parseEnum[T ~uint8](names []string, v *T, b []byte, what string) error {
	for i, n := range names {
		if n == string(b) {
			*v = T(i)
			return nil
		}
	}
	return fmt.Errorf("unknown %s %q", what, b)
}

// MAC is an Ethernet address; JSON has it as text (02:00:5e:10:00:01).
type MAC [6]byte

func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// MarshalText writes the address as text.
func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText reads an address written by MarshalText.
func (m *MAC) UnmarshalText(b []byte) error {
	hw, err := net.ParseMAC(string(b))
	if err != nil || len(hw) != len(m) {
		return fmt.Errorf("MAC address %q: want 6 bytes as aa:bb:cc:dd:ee:ff", b)
	}
	copy(m[:], hw)
	return nil
}

// Uint64 is the address in the low 48 bits, as FlowMessage carries it.
func (m MAC) Uint64() uint64 {
	var v uint64
	for _, b := range m {
		v = v<<8 | uint64(b)
	}
	return v
}

// word is 0 for the zero address only: two loads, no branch (comparing
// with MAC{} costs Flow.Extras four).
func (m *MAC) word() uint32 {
	le := binary.LittleEndian
	return le.Uint32(m[:4]) | uint32(le.Uint16(m[4:]))
}

// MACFrom is the address in the low 48 bits of v.
func MACFrom(v uint64) MAC {
	var m MAC
	for i := len(m) - 1; i >= 0; i-- {
		m[i], v = byte(v), v>>8
	}
	return m
}

// MaxMplsLabels is how many label stack entries a record holds (the
// datapath's MAX_MPLS_LABELS).
const MaxMplsLabels = 8

// MplsDepth is how many entries of a label stack are in use: up to the
// last non-zero one (an entry past the bottom is 0; the bottom has S set,
// so it never is).
func MplsDepth(labels *[MaxMplsLabels]uint32) int {
	n := len(labels)
	for n > 0 && labels[n-1] == 0 {
		n--
	}
	return n
}
