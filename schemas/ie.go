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
	IEVlanID                   = 58
	IEFlowDirection            = 61 // 0 ingress, 1 egress
	IEIPVersion                = 60
	IEInterfaceName            = 82
	IEFlowEndReason            = 136
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
)

// TemplateID is the data template of a record: IPv4 or IPv6, with
// flowDirection or not, bidirectional or not.
func TemplateID(v6, dir, bi bool) uint16 {
	id := uint16(TemplateIPv4)
	switch {
	case dir && bi:
		id = TemplateIPv4DirBi
	case bi:
		id = TemplateIPv4Bi
	case dir:
		id = TemplateIPv4Dir
	}
	if v6 {
		id++
	}
	return id
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
	IPFIXFlowIPv4, _ = Fields(FlowTemplate(false, false, false), false)
	IPFIXFlowIPv6, _ = Fields(FlowTemplate(true, false, false), false)
	_, BiflowReverse = Fields(FlowTemplate(false, false, true), false)
)

// Options templates: after their scope field (IPFIX: observationDomainId
// or ingressInterface; NetFlow v9: scope System or Interface) they carry
// these fields.
var (
	IPFIXSamplingOptions = []Field{
		{IESamplingPacketInterval, 4},
		{IESamplingPacketSpace, 4},
		{IESelectorAlgorithm, 2},
		{IESamplingInterval, 4}, // for collectors that predate RFC 5477
		{IESamplingAlgorithm, 1},
	}
	V9SamplingOptions = []Field{
		{IESamplingInterval, 4},
		{IESamplingAlgorithm, 1},
	}
	InterfaceOptions = []Field{{IEInterfaceName, InterfaceNameLen}}
)

// InterfaceNameLen is interfaceName's fixed length, so that NetFlow v9
// (which has no variable-length fields) can carry it too.
const InterfaceNameLen = 32
