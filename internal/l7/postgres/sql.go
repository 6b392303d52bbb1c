package postgres

import "bytes"

// maxKeyword bounds a statement keyword; longer words are not keywords.
const maxKeyword = 16

// statementKind returns the statement's first keyword upper-cased (SELECT,
// INSERT, ...), after blanks, comments and opening parentheses; for WITH,
// the keyword of the statement its common table expressions lead to, if
// the sample shows it, else WITH. "" when there is no keyword.
func statementKind(sql []byte) string {
	sql = skipBlank(sql)
	for len(sql) > 0 && sql[0] == '(' {
		sql = skipBlank(sql[1:])
	}
	kw, rest := keyword(sql)
	if kw != "WITH" {
		return kw
	}
	if main := afterCTEs(rest); main != "" {
		return main
	}
	return kw
}

// keyword reads a word of ASCII letters and returns it upper-cased.
func keyword(b []byte) (string, []byte) {
	n := 0
	for n < len(b) && n <= maxKeyword && isLetter(b[n]) {
		n++
	}
	if n == 0 || n > maxKeyword || (n < len(b) && (b[n] == '_' || b[n] >= '0' && b[n] <= '9')) {
		return "", b
	}
	return string(bytes.ToUpper(b[:n])), b[n:]
}

func isLetter(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

// afterCTEs skips "[RECURSIVE] name [(cols)] AS [[NOT] MATERIALIZED]
// (body) [, ...]" and returns the main statement's keyword, "" if the
// sample ends first. A parenthesis closing at depth 0 ends a column list
// (AS follows), a body (a comma or the main statement follows).
func afterCTEs(b []byte) string {
	depth := 0
	for len(b) > 0 {
		c := b[0]
		b = b[1:]
		switch c {
		case '(':
			depth++
		case '"', '\'':
			b = skipQuoted(b, c)
		case ')':
			depth--
			if depth != 0 {
				continue
			}
			b = skipBlank(b)
			if len(b) > 0 && b[0] == ',' {
				continue
			}
			kw, rest := keyword(b)
			if kw != "AS" {
				return kw
			}
			b = rest
		}
	}
	return ""
}

// skipQuoted skips to after the closing quote q (” and "" escape one).
func skipQuoted(b []byte, q byte) []byte {
	for {
		i := bytes.IndexByte(b, q)
		if i < 0 {
			return nil
		}
		b = b[i+1:]
		if len(b) == 0 || b[0] != q {
			return b
		}
		b = b[1:]
	}
}

// skipBlank skips white space and SQL comments.
func skipBlank(b []byte) []byte {
	for len(b) > 0 {
		switch {
		case b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r' || b[0] == '\f':
			b = b[1:]
		case bytes.HasPrefix(b, []byte("--")):
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				return nil
			}
			b = b[i+1:]
		case bytes.HasPrefix(b, []byte("/*")):
			i := bytes.Index(b[2:], []byte("*/"))
			if i < 0 {
				return nil
			}
			b = b[i+4:]
		default:
			return b
		}
	}
	return b
}
