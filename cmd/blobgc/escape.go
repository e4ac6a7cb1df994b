package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Strings that come from a server (node and server ids, addresses, error
// messages) may hold control characters: printed raw they could move the
// cursor, rewrite earlier lines or retitle the terminal. Table output and
// error text show them escaped instead; JSON output escapes them anyway.

// printable returns s with every character that is not graphic (controls,
// including tab and newline, and invalid UTF-8) escaped as in a Go string
// literal, e.g. "vm\x1b[2J" for an id holding ESC.
func printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsGraphic(r):
			b.WriteString(s[i : i+n])
		default:
			q := strconv.QuoteRune(r) // '\n', '\x1b', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		}
		i += n
	}
	return b.String()
}

// controlEscaper passes table output through, escaping any control byte
// other than the tab and newline that lay the table out: a last line of
// defence for a server string that was not passed through printable.
type controlEscaper struct{ w io.Writer }

func (e controlEscaper) Write(p []byte) (int, error) {
	clean := true
	for _, c := range p {
		if (c < 0x20 && c != '\t' && c != '\n') || c == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return e.w.Write(p)
	}
	var b strings.Builder
	for _, c := range p {
		if (c < 0x20 && c != '\t' && c != '\n') || c == 0x7f {
			fmt.Fprintf(&b, `\x%02x`, c)
		} else {
			b.WriteByte(c)
		}
	}
	if _, err := io.WriteString(e.w, b.String()); err != nil {
		return 0, err
	}
	return len(p), nil
}
