package bpf

import (
	"encoding/binary"
	"fmt"
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

const sampleHdrLen = 24 // struct sample_hdr up to data

// ParseSample decodes a ring buffer record written by the program.
func ParseSample(rec []byte) (Sample, error) {
	if len(rec) < sampleHdrLen {
		return Sample{}, fmt.Errorf("sample record of %d bytes: shorter than its %d-byte header", len(rec), sampleHdrLen)
	}
	s := Sample{
		TimeNs:  binary.NativeEndian.Uint64(rec[0:]),
		InIf:    binary.NativeEndian.Uint32(rec[8:]),
		OrigLen: binary.NativeEndian.Uint32(rec[12:]),
	}
	capLen := binary.NativeEndian.Uint32(rec[16:])
	if int(capLen) > len(rec)-sampleHdrLen {
		return Sample{}, fmt.Errorf("sample record claims %d bytes, holds %d", capLen, len(rec)-sampleHdrLen)
	}
	s.Data = rec[sampleHdrLen : sampleHdrLen+int(capLen)]
	return s, nil
}
