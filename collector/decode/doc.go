// Package decode turns NetFlow v5, NetFlow v9 (RFC 3954) and IPFIX
// (RFC 7011) export messages into schemas.FlowMessage records: the decode
// path of xdpflow-collector.
//
// # What does the work
//
// Template and options template records (v9 and IPFIX) are parsed by
// goflow2's decoders/netflow, after this package has checked that the set
// and record lengths they claim fit the message (goflow2 allocates what a
// field count says before reading it). Data records are then walked here
// with the compiled template (field offsets) and mapped straight onto a
// reused FlowMessage by a switch on the information element id: no
// per-record allocation and no reflection, which goflow2's generic decode
// and ProtoProducer spend most of their time in (BenchmarkDecode compares
// the two). NetFlow v5 records have a fixed layout and are read the same
// way (goflow2's decoders/netflowlegacy allocates per record and sizes its
// record slice from the header's count before checking the length). The
// tests check the output against tshark and the probe's own encoder, and
// BenchmarkDecode against goflow2's decoders + ProtoProducer.
//
// # State, and what bounds it
//
// Templates, sampling rates, interface names and data waiting for its
// template are kept per exporter (its IP address: the source port may
// change without a restart, and templates are refreshed rarely) and
// observation domain (v9: source id); sequence numbers per transport
// session (address and source port) and domain, so an exporter restarting
// on a new port is a reset, not a loss. IPFIX and v9 state of one address
// are kept apart. Every kind of state has a limit (Config; the memory of
// templates, domains and interface names one budget over all exporters)
// and whatever a limit turns away is counted in Stats by reason, per
// exporter, so one flooding exporter shows; drops from sources not tracked
// are in Stats.Untracked. At MaxExporters, the exporter whose last decoded
// message is the oldest (one that never decoded first) gives up its slot.
//
// # Sampling rate
//
// sampling_rate is what the exporter said, and 0 when it said nothing or
// nothing that gives a packet ratio; counters are never scaled by it.
// selectorAlgorithm 304 (RFC 5477) names the IEs that give the rate
// (305/306, 309/310, 311); without it samplingPacketInterval 305 (+ 306),
// samplingInterval 34 / samplerRandomInterval 50 (RFC 7270), 309/310 or
// 311 do; v5 has it in its header. Rates are kept per exporter, domain and
// sampler (samplerId 48 / selectorId 302), and a record's own sampling IEs
// win. docs/collector.md has the whole table.
//
// 0 means "unknown", as in goflow2 (whose field numbers FlowMessage
// shares) and as Akvorado and other consumers expect: a consumer that
// scales bytes by sampling_rate must pick its own default for 0 rather
// than be told "1" by a collector that does not know. An unsampled exporter
// that says so (the xdpflow probe sends options template 258 with interval
// 1; a v5 exporter with interval 1) gets 1.
//
// # Concurrency
//
// A Decoder is safe for concurrent use: a short global lock finds the
// exporter, and a lock per exporter serialises its messages (emit runs
// under that lock, so it must not call Decode or Expire). The memory
// budgets are atomic counters shared by all exporters.
package decode
