package fragment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// NumberLen is the width of a fragment number in keys.
const NumberLen = 14

// Number is a fragment number: term u64 | node u16 | seq u32, big-endian,
// so byte order is numeric order (lsm/FORMAT.md, "Fragment numbers").
type Number [NumberLen]byte

// MakeNumber builds a fragment number.
func MakeNumber(term uint64, node uint16, seq uint32) Number {
	var n Number
	binary.BigEndian.PutUint64(n[0:], term)
	binary.BigEndian.PutUint16(n[8:], node)
	binary.BigEndian.PutUint32(n[10:], seq)
	return n
}

func (n Number) Term() uint64 { return binary.BigEndian.Uint64(n[0:]) }
func (n Number) Node() uint16 { return binary.BigEndian.Uint16(n[8:]) }
func (n Number) Seq() uint32  { return binary.BigEndian.Uint32(n[10:]) }
func (n Number) IsZero() bool { return n == Number{} }

// Compare orders fragment numbers.
func (n Number) Compare(m Number) int {
	for i := range n {
		if n[i] != m[i] {
			if n[i] < m[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// Next is the smallest number after n (for exclusive range starts).
func (n Number) Next() Number {
	for i := len(n) - 1; i >= 0; i-- {
		n[i]++
		if n[i] != 0 {
			break
		}
	}
	return n
}

// DecimalLen is the width of the decimal form.
const DecimalLen = 1 + 16 + 5 + 10

// maxTerm keeps the term within 16 decimal digits (year 318857).
const maxTerm = 9_999_999_999_999_999

// AppendDecimal appends the wire form: "1", then term (16 digits), node (5)
// and seq (10), zero-padded: 32 digits, fixed width, so string order is
// numeric order.
func (n Number) AppendDecimal(dst []byte) []byte {
	dst = append(dst, '1')
	dst = appendPadded(dst, n.Term(), 16)
	dst = appendPadded(dst, uint64(n.Node()), 5)
	return appendPadded(dst, uint64(n.Seq()), 10)
}

func (n Number) String() string { return string(n.AppendDecimal(make([]byte, 0, DecimalLen))) }

func appendPadded(dst []byte, v uint64, width int) []byte {
	var buf [20]byte
	s := strconv.AppendUint(buf[:0], v, 10)
	for i := len(s); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// ErrBadNumber reports a string that is not a kvsedge fragment number.
var ErrBadNumber = errors.New("not a fragment number")

// ParseNumber parses the decimal form.
func ParseNumber(s string) (Number, error) {
	if len(s) != DecimalLen || s[0] != '1' {
		return Number{}, fmt.Errorf("%w: %q", ErrBadNumber, s)
	}
	term, err1 := strconv.ParseUint(s[1:17], 10, 64)
	node, err2 := strconv.ParseUint(s[17:22], 10, 16)
	seq, err3 := strconv.ParseUint(s[22:], 10, 32)
	if err1 != nil || err2 != nil || err3 != nil || term > maxTerm {
		return Number{}, fmt.Errorf("%w: %q", ErrBadNumber, s)
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return Number{}, fmt.Errorf("%w: %q", ErrBadNumber, s)
		}
	}
	return MakeNumber(term, uint16(node), uint32(seq)), nil
}
