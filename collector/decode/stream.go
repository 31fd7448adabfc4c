package decode

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// ReadIPFIXMessage reads one IPFIX message from an IPFIX-over-TCP stream
// (RFC 7011 10.4: messages back to back, each framed by its header's
// length) into buf, growing it if needed, and returns the message. A
// version other than 10 or a length below the 16-byte header means the
// stream is not IPFIX or lost its framing: the error says so and the
// caller should drop the connection. io.EOF is returned at a clean end
// between messages, io.ErrUnexpectedEOF inside one.
func ReadIPFIXMessage(r *bufio.Reader, buf []byte) ([]byte, error) {
	hdr, err := r.Peek(4)
	if err != nil {
		if err == io.EOF && len(hdr) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if v := binary.BigEndian.Uint16(hdr); v != 10 {
		return nil, fmt.Errorf("ipfix stream: version %d, want 10: not IPFIX or out of step", v)
	}
	n := int(binary.BigEndian.Uint16(hdr[2:]))
	if n < ipfixHeaderLen {
		return nil, fmt.Errorf("ipfix stream: message length %d, below the %d-byte header", n, ipfixHeaderLen)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("ipfix stream: %d-byte message: %w", n, err)
	}
	return buf, nil
}
