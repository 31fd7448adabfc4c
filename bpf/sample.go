package bpf

import (
	"encoding/binary"
	"fmt"
	"unsafe"
)

// MaxIPv6ExtHeaders is how many IPv6 extension headers the program follows
// (MAX_IPV6_EXT in xdpflow.c); a longer chain is counted as malformed.
const MaxIPv6ExtHeaders = 8

// Sample is one sampled frame head read from the Samples ring.
type Sample struct {
	TimeNs  uint64 // CLOCK_MONOTONIC
	InIf    uint32
	OrigLen uint32 // frame length on the wire
	Data    []byte // the first bytes of the frame (aliases the record)
}

// A ring record is struct sample_hdr (xdpflowSampleHdr, generated from
// xdpflow.h) cut after cap_len bytes of data: the header is everything
// before data, and its fields are read at their offsets in that struct.
var sampleLayout xdpflowSampleHdr

const (
	sampleHdrLen  = int(unsafe.Offsetof(sampleLayout.Data))
	offTimeNs     = unsafe.Offsetof(sampleLayout.TimeNs)
	offInIf       = unsafe.Offsetof(sampleLayout.InIf)
	offOrigLen    = unsafe.Offsetof(sampleLayout.OrigLen)
	offCapLen     = unsafe.Offsetof(sampleLayout.CapLen)
	sampleMaxData = len(sampleLayout.Data)
)

// MaxSampleBytes is SAMPLE_MAX_BYTES, the size of sample_hdr's data.
var (
	_ [sampleMaxData - MaxSampleBytes]struct{}
	_ [MaxSampleBytes - sampleMaxData]struct{}
)

// ParseSample decodes a ring buffer record written by the program.
func ParseSample(rec []byte) (Sample, error) {
	if len(rec) < sampleHdrLen {
		return Sample{}, fmt.Errorf("sample record of %d bytes: shorter than its %d-byte header", len(rec), sampleHdrLen)
	}
	s := Sample{
		TimeNs:  binary.NativeEndian.Uint64(rec[offTimeNs:]),
		InIf:    binary.NativeEndian.Uint32(rec[offInIf:]),
		OrigLen: binary.NativeEndian.Uint32(rec[offOrigLen:]),
	}
	capLen := binary.NativeEndian.Uint32(rec[offCapLen:])
	if int(capLen) > len(rec)-sampleHdrLen {
		return Sample{}, fmt.Errorf("sample record claims %d bytes, holds %d", capLen, len(rec)-sampleHdrLen)
	}
	s.Data = rec[sampleHdrLen : sampleHdrLen+int(capLen)]
	return s, nil
}
