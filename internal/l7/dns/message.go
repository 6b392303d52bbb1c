package dns

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
)

// Wire format (RFC 1035 §4.1): a 12-byte header, then the question, answer,
// authority and additional sections. Only the header, the question and the
// answer section are read.
const headerLen = 12

var (
	errShort   = errors.New("message ends early")
	errLabel   = errors.New("bad label")
	errPointer = errors.New("bad compression pointer")
	errLong    = errors.New("name longer than 255 bytes")
)

// message is what is read of one DNS message, in fixed-size room so that
// reading it allocates nothing.
type message struct {
	id               uint16
	response         bool
	opcode, rcode    uint8
	qd, an, nsc, arc uint16
	questionEnd      int // offset after the question, once read
	qtype, qclass    uint16
	nameLen          int // bytes of name used in the question
	name             [maxName]byte
	addrs            [maxAddrs]netip.Addr
	naddrs           int
}

// maxName is the longest presentation name kept: 255 wire bytes make at
// most 253 characters without the trailing dot.
const maxName = 255

// maxAddrs bounds the addresses read from one response: more than the
// flow record keeps, so that naming sees every address a short sample holds.
const maxAddrs = 32

// maxPointers bounds the compression pointers followed in one name; since
// every pointer must point before the label that holds it, a name cannot
// loop anyway, this only bounds the work on hostile input.
const maxPointers = 32

// readHeader reads the fixed header into h.
func readHeader(b []byte, h *message) error {
	if len(b) < headerLen {
		return errShort
	}
	h.id = binary.BigEndian.Uint16(b[0:])
	flags := binary.BigEndian.Uint16(b[2:])
	h.response = flags&0x8000 != 0
	h.opcode = uint8(flags>>11) & 0xf
	h.rcode = uint8(flags & 0xf)
	h.qd = binary.BigEndian.Uint16(b[4:])
	h.an = binary.BigEndian.Uint16(b[6:])
	h.nsc = binary.BigEndian.Uint16(b[8:])
	h.arc = binary.BigEndian.Uint16(b[10:])
	return nil
}

// plausible reports whether a message's start is a DNS query or response as
// a stub resolver and its server exchange them: one question in class IN
// (or CH, ANY; mDNS's unicast-response bit allowed), standard opcode, and a
// query carries no answers and no rcode. It decides the framing of a new
// conversation, so it must reject the other framing's bytes: a TCP
// message read as UDP has its ID as the flags and its flags as the
// question count, which is never 1 for the flags resolvers send.
func plausible(b []byte) bool {
	var h message
	if readHeader(b, &h) != nil || h.qd != 1 || h.opcode != 0 {
		return false
	}
	if !h.response && (h.an != 0 || h.rcode != 0 || h.nsc > 1 || h.arc > 2) {
		return false
	}
	if readQuestion(b, &h) != nil {
		return false
	}
	switch h.qclass &^ 0x8000 {
	case 1, 3, 255:
		return true
	}
	return false
}

// readQuestion reads the header's one question into h.name, h.qtype,
// h.qclass. The name is lowercased.
func readQuestion(b []byte, h *message) error {
	n, off, err := readName(b, headerLen, h.name[:0])
	if err != nil {
		return err
	}
	if off+4 > len(b) {
		return errShort
	}
	h.nameLen = len(n)
	h.qtype = binary.BigEndian.Uint16(b[off:])
	h.qclass = binary.BigEndian.Uint16(b[off+2:])
	h.questionEnd = off + 4
	return nil
}

// readName decodes the name at off, appending its lowercase presentation
// form (labels joined by dots, no trailing dot; the root is ".") to dst,
// and returns the offset after the name where it started. Pointers must
// point strictly before the label holding them, so decoding ends, and
// past the header.
func readName(b []byte, off int, dst []byte) ([]byte, int, error) {
	start := len(dst)
	next := -1 // offset after the name in its original place
	wire := 0  // wire length, for the 255-byte limit
	limit := off
	for hops := 0; ; {
		if off >= len(b) {
			return dst, 0, errShort
		}
		l := int(b[off])
		switch l & 0xc0 {
		case 0x00:
		case 0xc0:
			if off+1 >= len(b) {
				return dst, 0, errShort
			}
			ptr := int(binary.BigEndian.Uint16(b[off:]) & 0x3fff)
			if next < 0 {
				next = off + 2
			}
			hops++
			if ptr < headerLen || ptr >= limit || hops > maxPointers {
				return dst, 0, errPointer
			}
			off, limit = ptr, ptr
			continue
		default:
			return dst, 0, errLabel
		}
		wire += l + 1
		if wire > 255 {
			return dst, 0, errLong
		}
		if l == 0 {
			if next < 0 {
				next = off + 1
			}
			if len(dst) == start {
				dst = append(dst, '.')
			}
			return dst, next, nil
		}
		if off+1+l > len(b) {
			return dst, 0, errShort
		}
		if len(dst) > start {
			dst = append(dst, '.')
		}
		for _, c := range b[off+1 : off+1+l] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
		}
		off += 1 + l
	}
}

// Resource record types this package reads or names.
const (
	typeA     = 1
	typeNS    = 2
	typeCNAME = 5
	typeSOA   = 6
	typePTR   = 12
	typeMX    = 15
	typeTXT   = 16
	typeAAAA  = 28
	typeSRV   = 33
	typeSVCB  = 64
	typeHTTPS = 65
	typeANY   = 255
)

// qtypeNames is indexed by the common types; others are TYPE<n> (RFC 3597).
var qtypeNames = map[uint16]string{
	typeA: "A", typeNS: "NS", typeCNAME: "CNAME", typeSOA: "SOA", typePTR: "PTR",
	typeMX: "MX", typeTXT: "TXT", typeAAAA: "AAAA", typeSRV: "SRV",
	typeSVCB: "SVCB", typeHTTPS: "HTTPS", typeANY: "ANY",
}

func qtypeName(t uint16) string {
	if s, ok := qtypeNames[t]; ok {
		return s
	}
	return "TYPE" + strconv.Itoa(int(t))
}

var rcodeNames = [...]string{"noerror", "formerr", "servfail", "nxdomain", "notimp", "refused"}

func rcodeName(c uint8) string {
	if int(c) < len(rcodeNames) {
		return rcodeNames[c]
	}
	return "rcode" + strconv.Itoa(int(c))
}

// readAnswers walks the answer section after the question and keeps the A
// and AAAA addresses that answer the question's name, following CNAMEs
// from it, with the smallest TTL among the records used. A sample cut
// short keeps what it holds; anything malformed ends the walk the same way.
//
// Servers list a chain in order (the CNAME before its target's records),
// and the walk relies on it: a record is used if its owner is the name the
// chain has reached so far.
func readAnswers(b []byte, h *message) {
	var owner, target, scratch [maxName]byte
	cur := append(target[:0], h.name[:h.nameLen]...)
	off := h.questionEnd
	for i := 0; i < int(h.an); i++ {
		o, next, err := readName(b, off, owner[:0])
		if err != nil || next+10 > len(b) {
			return
		}
		typ := binary.BigEndian.Uint16(b[next:])
		class := binary.BigEndian.Uint16(b[next+2:])
		rdlen := int(binary.BigEndian.Uint16(b[next+8:]))
		rdata := next + 10
		if rdata+rdlen > len(b) {
			return
		}
		off = rdata + rdlen
		if class&^0x8000 != 1 || string(o) != string(cur) {
			continue
		}
		var addr netip.Addr
		switch {
		case typ == typeCNAME:
			t, _, err := readName(b, rdata, scratch[:0])
			if err != nil {
				continue
			}
			cur = append(target[:0], t...)
		case typ == typeA && rdlen == 4:
			addr = netip.AddrFrom4([4]byte(b[rdata : rdata+4]))
		case typ == typeAAAA && rdlen == 16:
			addr = netip.AddrFrom16([16]byte(b[rdata : rdata+16]))
		default:
			continue
		}
		if addr.IsValid() && h.naddrs < maxAddrs {
			h.addrs[h.naddrs] = addr
			h.naddrs++
		}
	}
}
