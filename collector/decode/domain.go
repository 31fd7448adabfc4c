package decode

import "strings"

// domain is the state of one observation domain (v9: source id) of one
// exporter and one protocol version.
type domain struct {
	version   uint16
	id        uint32
	templates map[uint16]*template

	sampling  samplerRates      // from options data (v5: the header)
	sysInitMs uint64            // IPFIX systemInitTimeMilliseconds (160) from options data
	ifNames   map[uint32]string // ifindex -> interfaceName, from options data

	seq     seqTracker
	pending []pendingSet
}

func domainKey(version uint16, id uint32) uint64 { return uint64(version)<<32 | uint64(id) }

// domain finds or creates the state of (version, id).
func (e *exporter) domain(version uint16, id uint32) (*domain, error) {
	k := domainKey(version, id)
	if dom := e.domains[k]; dom != nil {
		return dom, nil
	}
	if len(e.domains) >= maxDomains {
		return nil, drop(ReasonTooManyDomains, "%d observation domains from %v", len(e.domains), e.addr)
	}
	dom := &domain{version: version, id: id, templates: map[uint16]*template{}}
	e.domains[k] = dom
	return dom, nil
}

// setIfName remembers an interface name from options data (bounded).
func (dom *domain) setIfName(index uint32, name []byte) {
	for len(name) > 0 && name[len(name)-1] == 0 { // fixed-length names are NUL-padded
		name = name[:len(name)-1]
	}
	if len(name) > maxIfNameLen {
		name = name[:maxIfNameLen]
	}
	if old, ok := dom.ifNames[index]; ok && old == string(name) {
		return // the usual refresh: no allocation
	}
	if dom.ifNames == nil {
		dom.ifNames = map[uint32]string{}
	}
	if _, ok := dom.ifNames[index]; !ok && len(dom.ifNames) >= maxIfNames {
		return
	}
	// Names end up in protobuf string fields, which must be UTF-8: a
	// router's Latin-1 name would make the message unencodable.
	dom.ifNames[index] = strings.ToValidUTF8(string(name), "\uFFFD")
}
