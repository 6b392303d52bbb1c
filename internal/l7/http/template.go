package http

import "bytes"

const (
	maxPath = 128 // bytes of a path template; past it, cut at a segment and "/..."
	maxHost = 253
)

// appendTemplate appends the path template of a request target: the query
// string and fragment dropped, each segment that looks like an identifier
// replaced by {id}. cut says the target was cut by the capture: its last
// segment is incomplete and becomes "...".
func appendTemplate(dst, target []byte, cut bool) []byte {
	for i, c := range target {
		if c == '?' || c == '#' {
			target, cut = target[:i], false
			break
		}
	}
	if len(target) == 1 && target[0] == '*' {
		return append(dst, '*')
	}
	if target, _ = splitAbsolute(target); len(target) == 0 || target[0] != '/' {
		return append(dst, '/')
	}
	start := len(dst)
	for rest := target[1:]; ; {
		seg := rest
		i := bytes.IndexByte(rest, '/')
		if i >= 0 {
			seg, rest = rest[:i], rest[i+1:]
		}
		mark := len(dst)
		dst = append(dst, '/')
		switch {
		case i < 0 && cut:
			dst = append(dst, "..."...)
		case isID(seg):
			dst = append(dst, "{id}"...)
		default:
			dst = append(dst, seg...)
		}
		if len(dst)-start > maxPath {
			return append(dst[:mark], "/..."...)
		}
		if i < 0 {
			return dst
		}
	}
}

// splitAbsolute splits an absolute-form target (http://host:port/path, as
// sent to proxies) into its path and authority; other targets are returned
// as they are.
func splitAbsolute(target []byte) (path, authority []byte) {
	if len(target) > 0 && target[0] == '/' {
		return target, nil // origin-form, the usual case
	}
	i := bytes.Index(target, []byte("://"))
	if i <= 0 || !isScheme(target[:i]) {
		return target, nil
	}
	rest := target[i+3:]
	j := bytes.IndexByte(rest, '/')
	if j < 0 {
		return nil, rest
	}
	return rest[j:], rest[:j]
}

func isScheme(b []byte) bool {
	return equalFold(b, "http") || equalFold(b, "https")
}

// isID reports whether a path segment is an identifier rather than a name:
// a number, a UUID, a hex string of 8 or more with a digit, or a token of
// 16 or more base64/base64url characters with a digit.
func isID(seg []byte) bool {
	if len(seg) == 0 {
		return false
	}
	all, digits := idDigit|idHex|idToken, 0
	for _, c := range seg {
		k := idClass[c]
		all &= k
		digits += int(k & idDigit)
	}
	switch {
	case all&idDigit != 0:
		return true
	case all&idHex != 0:
		return len(seg) >= 8 && digits > 0
	case len(seg) == 36 && hexWithUUIDDashes(seg):
		return seg[8] == '-' || digits > 0 // a UUID: hex with its four dashes in place
	}
	return all&idToken != 0 && len(seg) >= 16 && digits > 0
}

// The classes of a byte in an identifier, one table lookup a byte: a
// keep-alive request's path is read at every request.
const (
	idDigit uint8 = 1 << iota
	idHex
	idToken // base64 and base64url, and '-'
)

var idClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		switch {
		case '0' <= c && c <= '9':
			t[c] = idDigit | idHex | idToken
		case 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
			t[c] = idHex | idToken
		case 'g' <= c && c <= 'z', 'G' <= c && c <= 'Z', c == '-', c == '_', c == '=', c == '+':
			t[c] = idToken
		}
	}
	return t
}()

// hexWithUUIDDashes reports whether a 36-byte segment is hex but for
// dashes where a UUID has its own.
func hexWithUUIDDashes(seg []byte) bool {
	for i, c := range seg {
		if idClass[c]&idHex == 0 && (c != '-' || i != 8 && i != 13 && i != 18 && i != 23) {
			return false
		}
	}
	return true
}

// appendHost appends a Host value in lower case without its port, or
// nothing when it is not a plausible host name or address.
func appendHost(dst, v []byte) []byte {
	if len(v) > 0 && v[0] == '[' {
		i := bytes.IndexByte(v, ']')
		if i < 0 {
			return dst
		}
		v = v[1:i]
	} else if i := bytes.LastIndexByte(v, ':'); i >= 0 {
		v = v[:i]
	}
	if len(v) == 0 || len(v) > maxHost {
		return dst
	}
	start := len(dst)
	dst = append(dst, v...)
	for i := start; i < len(dst); i++ {
		if dst[i] = hostByte[dst[i]]; dst[i] == 0 {
			return dst[:start]
		}
	}
	return dst
}

// hostByte maps a byte of a host name or address to its lower case, and
// any other byte to 0.
var hostByte = func() (t [256]byte) {
	for c := 0; c < 256; c++ {
		switch {
		case 'A' <= c && c <= 'Z':
			t[c] = byte(c) + 'a' - 'A'
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '.', c == '-', c == '_', c == ':':
			t[c] = byte(c)
		}
	}
	return t
}()
