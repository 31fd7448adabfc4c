package schemas

// IANA IPFIX information elements used by the probe's templates (and read
// by the collector). NetFlow v9 uses the same numbers for 1-127.
const (
	IEOctetDeltaCount          = 1
	IEPacketDeltaCount         = 2
	IEProtocolIdentifier       = 4
	IEIPClassOfService         = 5
	IETCPControlBits           = 6
	IESourceTransportPort      = 7
	IESourceIPv4Address        = 8
	IEIngressInterface         = 10
	IEDestinationTransportPort = 11
	IEDestinationIPv4Address   = 12
	IELastSwitched             = 21 // NetFlow v9: sysUptime ms of the last packet
	IEFirstSwitched            = 22 // NetFlow v9: sysUptime ms of the first packet
	IESourceIPv6Address        = 27
	IEDestinationIPv6Address   = 28
	IEICMPTypeCodeIPv4         = 32
	IESamplingInterval         = 34
	IESamplingAlgorithm        = 35
	IESourceMacAddress         = 56
	IEVlanID                   = 58
	IEFlowDirection            = 61 // 0 ingress, 1 egress
	IEIPVersion                = 60
	IEMplsTopLabelStackSection = 70 // 71-79: mplsLabelStackSection2-10
	IEDestinationMacAddress    = 80
	IEInterfaceName            = 82
	IEFlowEndReason            = 136
	IEObservationPointID       = 138 // unsigned64; the probe sends 4 bytes (reduced size, RFC 7011 6.2)
	IEICMPTypeCodeIPv6         = 139
	IEObservationDomainID      = 149
	IEFlowStartMilliseconds    = 152
	IEFlowEndMilliseconds      = 153
	IESelectorAlgorithm        = 304
	IESamplingPacketInterval   = 305
	IESamplingPacketSpace      = 306
	IELayer2OctetDeltaCount    = 352
)

// Field is one template field: an information element and its length.
type Field struct {
	ID     uint16
	Length uint16 // 0xffff: variable length (IPFIX only)
	PEN    uint32 // an enterprise IE's enterprise number (IPFIX only), else 0
}

// Template IDs the probe uses (data sets must use IDs >= 256).
const (
	TemplateIPv4      = 256
	TemplateIPv6      = 257
	TemplateSampling  = 258 // options: sampling configuration per observation domain
	TemplateInterface = 259 // options: ingressInterface -> interfaceName
	TemplateIPv4Dir   = 260 // TemplateIPv4 + flowDirection (--local-net)
	TemplateIPv6Dir   = 261 // TemplateIPv6 + flowDirection
	TemplateIPv4Bi    = 262 // TemplateIPv4 + biflowDirection + reverse IEs (--biflow, RFC 5103)
	TemplateIPv6Bi    = 263
	TemplateIPv4DirBi = 264 // TemplateIPv4Dir + biflowDirection + reverse IEs
	TemplateIPv6DirBi = 265
	// A template with extras is the one without plus TemplateExtrasStep
	// times the Extras: 272 (IPv4 with MACs) to 761 (IPv6, direction,
	// biflow and all five extras). 256-271 are the ones above.
	TemplateExtrasStep = 16
)

// ID is the data template's id: 256-265 without extras (IPv4 or IPv6,
// with flowDirection or not, bidirectional or not), then
// TemplateExtrasStep apart for each set of extras.
func (k TemplateKey) ID() uint16 {
	id := uint16(TemplateIPv4)
	switch {
	case k.Dir && k.Bi:
		id = TemplateIPv4DirBi
	case k.Bi:
		id = TemplateIPv4Bi
	case k.Dir:
		id = TemplateIPv4Dir
	}
	if k.V6 {
		id++
	}
	return id + TemplateExtrasStep*uint16(k.Extras)
}

// Our own IEs (ExportField.Enterprise), where IANA has none: numbered
// below maxEnterpriseIE, sent under the enterprise number the operator
// gives (FIELDS.md says why). RFC 5612's documentation number is what
// tests and examples use.
const (
	IETunnelType               = 1 // unsigned8, flow.proto's TunnelType
	IETunnelID                 = 2 // unsigned32
	IETunnelSourceAddress      = 3 // ipv6Address, IPv4-mapped for IPv4
	IETunnelDestinationAddress = 4
	IEMirrorType               = 5 // unsigned8, flow.proto's MirrorType

	maxEnterpriseIE  = 64
	PENDocumentation = 32473 // RFC 5612: for documentation and examples only
)

// ntop's IEs (nProbe; PEN 35632 in IPFIX, ntopV9BaseIE + the IE in
// NetFlow v9), for TCP health: nfdump reads the v9 latency pairs
// (57554-57559), Wireshark decodes the IPFIX ones by name.
const (
	PENNtop                   = 35632
	ntopV9BaseIE              = 57472
	IENtopClientNwDelaySec    = 82 // v9 57554
	IENtopClientNwDelayUsec   = 83
	IENtopServerNwDelaySec    = 84
	IENtopServerNwDelayUsec   = 85
	IENtopApplLatencySec      = 86
	IENtopApplLatencyUsec     = 87 // v9 57559
	IENtopRetransmittedInPkts = 109
	IENtopOOOrderInPkts       = 111
	IENtopClientNwLatencyMs   = 123
	IENtopServerNwLatencyMs   = 124
	IENtopApplLatencyMs       = 125
)

// ntopV9 is the NetFlow v9 number of ntop's IE ie.
func ntopV9(ie uint16) uint16 { return ntopV9BaseIE + ie }

// NtopIE is the ntop IE of a NetFlow v9 field type, ok false when it is
// none of ntop's.
func NtopIE(v9 uint16) (ie uint16, ok bool) {
	if v9 < ntopV9BaseIE {
		return 0, false
	}
	return v9 - ntopV9BaseIE, true
}

// RFC 5103 biflows: the reverse direction's values are the same IEs with
// the enterprise bit set and IANA's reverse enterprise number.
const (
	PENReverse        = 29305
	IEBiflowDirection = 239 // 1: the forward direction is the initiator's
)

// The probe's data templates, derived from Exported: IPv4 and IPv6
// (IPFIX, record order), and the reverse IEs (PEN 29305) that end the
// biflow templates.
var (
	IPFIXFlowIPv4, _ = Fields(FlowTemplate(TemplateKey{}, false, false), false, 0)
	IPFIXFlowIPv6, _ = Fields(FlowTemplate(TemplateKey{V6: true}, false, false), false, 0)
	_, BiflowReverse = Fields(FlowTemplate(TemplateKey{Bi: true}, false, false), false, 0)
)

// Options templates: after their scope field (IPFIX: observationDomainId
// or ingressInterface; NetFlow v9: scope System or Interface) they carry
// these fields.
var (
	IPFIXSamplingOptions = []Field{
		{ID: IESamplingPacketInterval, Length: 4},
		{ID: IESamplingPacketSpace, Length: 4},
		{ID: IESelectorAlgorithm, Length: 2},
		{ID: IESamplingInterval, Length: 4}, // for collectors that predate RFC 5477
		{ID: IESamplingAlgorithm, Length: 1},
	}
	V9SamplingOptions = []Field{
		{ID: IESamplingInterval, Length: 4},
		{ID: IESamplingAlgorithm, Length: 1},
	}
	InterfaceOptions = []Field{{ID: IEInterfaceName, Length: InterfaceNameLen}}
)

// InterfaceNameLen is interfaceName's fixed length, so that NetFlow v9
// (which has no variable-length fields) can carry it too.
const InterfaceNameLen = 32
