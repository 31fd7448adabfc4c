package bpf

import (
	"fmt"
	"strconv"
	"strings"
)

// TunnelType says which encapsulation carried a flow (FlowKey.TunnelType,
// enum tunnel_type): FlowKey.TunnelId is its identifier.
type TunnelType = xdpflowTunnelType

const (
	TunnelNone   = xdpflowTunnelTypeTUNNEL_NONE
	TunnelMPLS   = xdpflowTunnelTypeTUNNEL_MPLS
	TunnelPPPoE  = xdpflowTunnelTypeTUNNEL_PPPOE
	TunnelGRE    = xdpflowTunnelTypeTUNNEL_GRE
	TunnelIPIP   = xdpflowTunnelTypeTUNNEL_IPIP
	TunnelVXLAN  = xdpflowTunnelTypeTUNNEL_VXLAN
	TunnelGeneve = xdpflowTunnelTypeTUNNEL_GENEVE
	TunnelGTPU   = xdpflowTunnelTypeTUNNEL_GTPU
)

// MirrorType says how a mirrored frame reached the probe
// (FlowKey.MirrorType, enum mirror_type).
type MirrorType = xdpflowMirrorType

const (
	MirrorNone   = xdpflowMirrorTypeMIRROR_NONE
	MirrorERSPAN = xdpflowMirrorTypeMIRROR_ERSPAN
	MirrorVXLAN  = xdpflowMirrorTypeMIRROR_VXLAN
	MirrorGeneve = xdpflowMirrorTypeMIRROR_GENEVE
	MirrorTZSP   = xdpflowMirrorTypeMIRROR_TZSP
)

// Default UDP ports of the encapsulations.
const (
	PortVXLAN  = 4789
	PortGeneve = 6081
	PortGTPU   = 2152
	PortTZSP   = 37008
)

// MaxTunnelPorts is how many UDP ports each of VXLAN and Geneve may be
// given (load-time constants: a lookup per frame would cost more).
const MaxTunnelPorts = 2

// Mirror is one mirror encapsulation to strip (--mirror-encap).
type Mirror struct {
	Type MirrorType
	// Port is the UDP destination port (VXLAN, Geneve, TZSP); 0 means
	// the type's default. ERSPAN is GRE: no port.
	Port uint16
}

var mirrorNames = map[string]MirrorType{"erspan": MirrorERSPAN, "vxlan": MirrorVXLAN, "geneve": MirrorGeneve, "tzsp": MirrorTZSP}

// ParseMirror reads erspan, vxlan[:PORT], geneve[:PORT] or tzsp[:PORT].
func ParseMirror(s string) (Mirror, error) {
	name, port, hasPort := strings.Cut(s, ":")
	t, ok := mirrorNames[name]
	if !ok {
		return Mirror{}, fmt.Errorf("mirror encapsulation %q: want erspan, vxlan[:PORT], geneve[:PORT] or tzsp[:PORT]", s)
	}
	m := Mirror{Type: t}
	if hasPort {
		if t == MirrorERSPAN {
			return Mirror{}, fmt.Errorf("mirror encapsulation %q: ERSPAN is carried in GRE and has no port", s)
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return Mirror{}, fmt.Errorf("mirror encapsulation %q: port must be 1-65535", s)
		}
		m.Port = uint16(p)
	}
	return m, nil
}

func (m Mirror) String() string {
	for n, t := range mirrorNames {
		if t == m.Type {
			if m.Port != 0 {
				return n + ":" + strconv.Itoa(int(m.Port))
			}
			return n
		}
	}
	return fmt.Sprintf("mirror(%d)", m.Type)
}

// defaultPort is the UDP port of a mirror type given none.
func (m Mirror) defaultPort() uint16 {
	switch m.Type {
	case MirrorVXLAN:
		return PortVXLAN
	case MirrorGeneve:
		return PortGeneve
	case MirrorTZSP:
		return PortTZSP
	}
	return 0
}
