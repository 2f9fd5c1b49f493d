package cachedsql

// SQL identifiers in rules: parsing, folding and canonical spelling.

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ident is a parsed, possibly schema-qualified SQL name; parts hold the
// folded (or quoted-as-written) text, schema first.
type ident struct{ parts []string }

func (id ident) table() string {
	if len(id.parts) == 0 {
		return ""
	}
	return id.parts[len(id.parts)-1]
}

func (id ident) schema() string {
	if len(id.parts) < 2 {
		return ""
	}
	return id.parts[0]
}

func (id ident) equal(o ident) bool { return slices.Equal(id.parts, o.parts) }

// String is the canonical spelling: parts that read back the same unquoted
// stay bare, others are double-quoted, so that the result is unambiguous
// and parses back to id. Cache keys use it.
func (id ident) String() string {
	var b strings.Builder
	for i, p := range id.parts {
		if i > 0 {
			b.WriteByte('.')
		}
		if isBare(p) {
			b.WriteString(p)
		} else {
			b.WriteByte('"')
			b.WriteString(strings.ReplaceAll(p, `"`, `""`))
			b.WriteByte('"')
		}
	}
	return b.String()
}

// isBare reports whether p reads back as itself unquoted.
func isBare(p string) bool {
	if p == "" {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c >= 'a' && c <= 'z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '$'):
		default:
			return false
		}
	}
	return true
}

var errTooManyDots = errors.New("more than one dot (want table or schema.table)")

// parseIdent parses a name of at most maxParts dot-separated parts, each
// unquoted (letters, digits, _ and $, not starting with a digit or $;
// folded to lower case) or double-quoted (case kept, "" for a quote).
// Whitespace is not allowed outside quotes: it is almost always a typo in a
// rules file.
func parseIdent(s string, maxParts int) (ident, error) {
	if s == "" {
		return ident{}, errors.New("empty name")
	}
	var parts []string
	i := 0
	for {
		part, n, err := scanPart(s[i:])
		if err != nil {
			return ident{}, err
		}
		parts = append(parts, part)
		i += n
		if i == len(s) {
			break
		}
		if s[i] != '.' {
			return ident{}, fmt.Errorf("invalid character %q in name", s[i])
		}
		i++
		if len(parts) == maxParts {
			if maxParts == 1 {
				return ident{}, errors.New("a column name cannot contain a dot (quote it)")
			}
			return ident{}, errTooManyDots
		}
	}
	return ident{parts: parts}, nil
}

// scanPart scans one name part at the start of s and returns it, and how
// many bytes it took.
func scanPart(s string) (string, int, error) {
	if s == "" {
		return "", 0, errors.New("empty name part")
	}
	if s[0] == '"' {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			switch c := s[i]; {
			case c == 0:
				return "", 0, errors.New("NUL in name")
			case c != '"':
				b.WriteByte(c)
			case i+1 < len(s) && s[i+1] == '"':
				b.WriteByte('"')
				i++
			default:
				if b.Len() == 0 {
					return "", 0, errors.New(`empty quoted name ""`)
				}
				return b.String(), i + 1, nil
			}
		}
		return "", 0, errors.New("unterminated quoted name")
	}
	var b strings.Builder
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		case c >= 'a' && c <= 'z', c == '_', c >= 0x80:
			b.WriteByte(c)
		case i > 0 && (c >= '0' && c <= '9' || c == '$'):
			b.WriteByte(c)
		default:
			if i == 0 {
				if c == '.' {
					return "", 0, errors.New("empty name part")
				}
				return "", 0, fmt.Errorf("invalid character %q in name", c)
			}
			return b.String(), i, nil
		}
	}
	return b.String(), i, nil
}

// splitIdents splits a comma-separated list of column names (spaces after
// commas allowed, commas inside quotes kept), as a key name.
func splitIdents(s string) ([]string, error) {
	var cols []string
	for {
		s = strings.TrimLeft(s, " ")
		_, n, err := scanPart(s)
		if err != nil {
			return nil, err
		}
		cols = append(cols, s[:n])
		s = strings.TrimLeft(s[n:], " ")
		if s == "" {
			return cols, nil
		}
		if s[0] != ',' {
			return nil, fmt.Errorf("invalid character %q in key name", s[0])
		}
		s = s[1:]
	}
}
