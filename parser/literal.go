package parser

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// unquoteIdent returns the name a quoted identifier token denotes.
func unquoteIdent(s string) string {
	if len(s) >= 2 && (s[0] == 'u' || s[0] == 'U') && s[1] == '&' {
		return decodeUnicodeEscapes(unquote(s[2:]))
	}
	if len(s) >= 2 && s[0] == '[' {
		return s[1 : len(s)-1]
	}
	return unquote(s)
}

// unquote strips the surrounding quote bytes of s and undoubles inner ones.
func unquote(s string) string {
	if len(s) < 2 {
		return ""
	}
	q := s[:1]
	inner := s[1 : len(s)-1]
	if !strings.Contains(inner, q) {
		return inner
	}
	return strings.ReplaceAll(inner, q+q, q)
}

// stringValue decodes a String token: it returns the value text and false
// if the token is not a plain character string (bit and hex strings).
func stringValue(s string, d Dialect) (string, bool) {
	if s == "" {
		return "", false
	}
	switch s[0] | 0x20 {
	case 'b', 'x':
		return "", false
	case 'n':
		return stringValue(s[1:], d)
	case 'e':
		return decodeBackslash(unquote(s[1:])), true
	case 'u':
		return decodeUnicodeEscapes(unquote(s[2:])), true
	case '$':
		i := strings.IndexByte(s[1:], '$') + 2
		return s[i : len(s)-i], true
	}
	if d == MySQL {
		// MySQL doubles quotes and also escapes them with backslashes.
		return decodeMySQL(unquote(s)), true
	}
	return unquote(s), true
}

// decodeBackslash decodes C-style escapes as in PostgreSQL E'...' strings and
// MySQL strings: \n \t \b \f \r \0 \ooo \xHH \uXXXX \UXXXXXXXX, and \c
// for any other c.
func decodeBackslash(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch c = s[i]; c {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'r':
			b.WriteByte('\r')
		case 'x':
			j := i + 1
			for j < len(s) && j < i+3 && isHexDigit(s[j]) {
				j++
			}
			if v, err := strconv.ParseUint(s[i+1:j], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i = j - 1
			} else {
				b.WriteByte('x')
			}
		case 'u', 'U':
			n := 4
			if c == 'U' {
				n = 8
			}
			if v, err := strconv.ParseUint(safeSlice(s, i+1, i+1+n), 16, 32); err == nil && i+1+n <= len(s) {
				b.WriteRune(rune(v))
				i += n
			} else {
				b.WriteByte(c)
			}
		default:
			if '0' <= c && c <= '7' {
				j := i
				for j < len(s) && j < i+3 && '0' <= s[j] && s[j] <= '7' {
					j++
				}
				v, _ := strconv.ParseUint(s[i:j], 8, 16)
				b.WriteByte(byte(v))
				i = j - 1
			} else {
				b.WriteByte(c)
			}
		}
	}
	return b.String()
}

// decodeMySQL decodes MySQL's backslash escapes (with the default sql_mode,
// no NO_BACKSLASH_ESCAPES): \0 \b \n \r \t \Z and \c for any other c,
// except that \% and \_ keep their backslash outside LIKE patterns.
// MySQL has no octal, hex or Unicode escapes.
func decodeMySQL(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch c = s[i]; c {
		case '0':
			b.WriteByte(0)
		case 'b':
			b.WriteByte('\b')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'Z':
			b.WriteByte(0x1a)
		case '%', '_':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// decodeUnicodeEscapes decodes \XXXX, \+XXXXXX and \\ in U&'...' strings and
// U&"..." identifiers (with the default escape character).
func decodeUnicodeEscapes(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		n, skip := 4, 1
		switch s[i+1] {
		case '\\':
			b.WriteByte('\\')
			i++
			continue
		case '+':
			n, skip = 6, 2
		}
		v, err := strconv.ParseUint(safeSlice(s, i+skip, i+skip+n), 16, 32)
		if err != nil || i+skip+n > len(s) || !utf8.ValidRune(rune(v)) {
			b.WriteByte('\\')
			continue
		}
		b.WriteRune(rune(v))
		i += skip + n - 1
	}
	return b.String()
}

func safeSlice(s string, i, j int) string {
	if i > len(s) {
		return ""
	}
	if j > len(s) {
		j = len(s)
	}
	return s[i:j]
}
