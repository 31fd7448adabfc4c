package decode

import "encoding/binary"

// Hand-built messages for the tests, written from RFC 7011 / 3954.

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// set wraps a set body with its header (length computed).
func set(id uint16, body ...[]byte) []byte {
	b := cat(body...)
	return cat(be16(id), be16(uint16(4+len(b))), b)
}

// tmpl is a template record: id, then (type, length) pairs.
func tmpl(id uint16, fields ...uint16) []byte {
	b := cat(be16(id), be16(uint16(len(fields)/2)))
	for _, f := range fields {
		b = append(b, be16(f)...)
	}
	return b
}

func ipfixMsg(seq, domain uint32, sets ...[]byte) []byte {
	body := cat(sets...)
	return cat(be16(10), be16(uint16(16+len(body))), be32(1_700_000_000), be32(seq), be32(domain), body)
}

func v9Msg(uptime, seq, domain uint32, sets ...[]byte) []byte {
	body := cat(sets...)
	return cat(be16(9), be16(uint16(len(sets))), be32(uptime), be32(1_700_000_000), be32(seq), be32(domain), body)
}

// Template 300: src, dst (IPv4), octets, packets (4 bytes each).
var tmpl300 = tmpl(300, 8, 4, 12, 4, 1, 4, 2, 4)

// rec300 is one record of template 300.
func rec300(i byte) []byte {
	return cat([]byte{10, 0, 0, i}, []byte{10, 0, 1, i}, be32(1000+uint32(i)), be32(uint32(i)))
}

func v5Msg(seq uint32, uptime uint32, count int) []byte {
	b := cat(be16(5), be16(uint16(count)), be32(uptime), be32(1_700_000_000), be32(0), be32(seq), []byte{0, 0}, be16(0x4000|100))
	for i := range count {
		r := make([]byte, 48)
		copy(r, []byte{10, 0, 0, byte(i), 10, 0, 1, byte(i)})
		binary.BigEndian.PutUint32(r[16:], 3)
		binary.BigEndian.PutUint32(r[20:], 300)
		binary.BigEndian.PutUint32(r[24:], uptime-1000)
		binary.BigEndian.PutUint32(r[28:], uptime-10)
		binary.BigEndian.PutUint16(r[32:], 1234)
		binary.BigEndian.PutUint16(r[34:], 80)
		r[38] = 6
		b = append(b, r...)
	}
	return b
}
