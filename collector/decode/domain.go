package decode

import "strings"

// domain is the state of one observation domain (v9: source id) of one
// exporter and one protocol version.
type domain struct {
	e         *exporter
	version   uint16
	id        uint32
	templates map[uint16]*template

	sampling  samplerRates      // from options data (v5: the header)
	sysInitMs uint64            // IPFIX systemInitTimeMilliseconds (160) from options data
	ifNames   map[uint32]string // ifindex -> interfaceName, from options data

	// Sequence numbers are per transport session (RFC 7011 10.3.2; RFC
	// 3954 5.1): an exporter that restarts comes back from a new source
	// port and starts its numbering over. seq is the session of the
	// message being decoded, chosen by exporter.domain.
	seq       *seqTracker
	sessions  [maxSessions]session
	nsessions int

	pending []pendingSet
}

// session is one transport session's sequence state (UDP: the source
// port; TCP: the connection's).
type session struct {
	port   uint16
	usedNs uint64
	seq    seqTracker
}

// maxSessions is how many source ports one domain's sequence numbers are
// followed on at once (some exporters send from a few sockets); the least
// recently used gives way.
const maxSessions = 4

func domainKey(version uint16, id uint32) uint64 { return uint64(version)<<32 | uint64(id) }

// domain finds or creates the state of (version, id), and selects the
// sequence state of the message's transport session (e.port).
func (e *exporter) domain(version uint16, id uint32) (*domain, error) {
	k := domainKey(version, id)
	dom := e.domains[k]
	if dom == nil {
		if len(e.domains) >= maxDomains {
			return nil, drop(ReasonTooManyDomains, "%d observation domains from %v", len(e.domains), e.addr)
		}
		if !e.charge(domainCost) {
			return nil, drop(ReasonTemplateMemory, "observation domain %d from %v: --max-template-bytes reached", id, e.addr)
		}
		dom = &domain{e: e, version: version, id: id, templates: map[uint16]*template{}}
		e.domains[k] = dom
	}
	dom.seq = dom.session(e.port, e.nowNs, &e.c)
	return dom, nil
}

// session returns port's sequence state. A port not seen before, in a
// domain already followed on another, is an exporter restart: counted in
// Resets, and its numbers start afresh instead of counting the jump as
// loss.
func (dom *domain) session(port uint16, nowNs uint64, c *Counters) *seqTracker {
	ss := dom.sessions[:dom.nsessions]
	for i := range ss {
		if ss[i].port == port {
			ss[i].usedNs = max(ss[i].usedNs, nowNs)
			return &ss[i].seq
		}
	}
	var s *session
	if dom.nsessions < maxSessions {
		s = &dom.sessions[dom.nsessions]
		dom.nsessions++
	} else {
		s = &ss[0]
		for i := range ss {
			if ss[i].usedNs < s.usedNs {
				s = &ss[i]
			}
		}
	}
	if dom.nsessions > 1 || s.seq != (seqTracker{}) {
		c.Resets++
	}
	*s = session{port: port, usedNs: nowNs}
	return &s.seq
}

// putTemplate stores t as template id, within MaxTemplatesPerExporter and
// the memory budget; what does not fit is counted, and a refresh that does
// not fit removes the old template (data must not be read with a stale
// layout).
func (d *Decoder) putTemplate(dom *domain, id uint16, t *template) bool {
	e := dom.e
	old := dom.templates[id]
	if old == nil && e.templates >= d.cfg.MaxTemplatesPerExporter {
		e.c.Dropped[ReasonTooManyTemplates]++
		return false
	}
	if old != nil {
		d.deleteTemplate(dom, id)
	}
	if !e.charge(templateCost(t)) {
		e.c.Dropped[ReasonTemplateMemory]++
		return false
	}
	dom.templates[id] = t
	e.templates++
	return true
}

// deleteTemplate forgets template id, if known.
func (d *Decoder) deleteTemplate(dom *domain, id uint16) {
	if t := dom.templates[id]; t != nil {
		delete(dom.templates, id)
		dom.e.templates--
		dom.e.release(templateCost(t))
	}
}

// setIfName remembers an interface name from options data (bounded).
func (dom *domain) setIfName(index uint32, name []byte) {
	for len(name) > 0 && name[len(name)-1] == 0 { // fixed-length names are NUL-padded
		name = name[:len(name)-1]
	}
	if len(name) > maxIfNameLen {
		name = name[:maxIfNameLen]
	}
	old, ok := dom.ifNames[index]
	if ok && old == string(name) {
		return // the usual refresh: no allocation
	}
	if dom.ifNames == nil {
		dom.ifNames = map[uint32]string{}
	}
	if !ok && len(dom.ifNames) >= maxIfNames {
		return
	}
	if ok {
		delete(dom.ifNames, index)
		dom.e.release(ifNameCost + int64(len(old)))
	}
	// Names end up in protobuf string fields, which must be UTF-8: a
	// router's Latin-1 name would make the message unencodable.
	s := strings.ToValidUTF8(string(name), "\uFFFD")
	if !dom.e.charge(ifNameCost + int64(len(s))) {
		dom.e.c.Dropped[ReasonTemplateMemory]++
		return
	}
	dom.ifNames[index] = s
}
