package lsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// FragNumLen is the width of a fragment number in keys.
const FragNumLen = 14

// FragNum is a fragment number: term u64 | node u16 | seq u32, big-endian,
// so byte order is numeric order (FORMAT.md, "Fragment numbers").
type FragNum [FragNumLen]byte

// MakeFragNum builds a fragment number.
func MakeFragNum(term uint64, node uint16, seq uint32) FragNum {
	var n FragNum
	binary.BigEndian.PutUint64(n[0:], term)
	binary.BigEndian.PutUint16(n[8:], node)
	binary.BigEndian.PutUint32(n[10:], seq)
	return n
}

func (n FragNum) Term() uint64 { return binary.BigEndian.Uint64(n[0:]) }
func (n FragNum) Node() uint16 { return binary.BigEndian.Uint16(n[8:]) }
func (n FragNum) Seq() uint32  { return binary.BigEndian.Uint32(n[10:]) }
func (n FragNum) IsZero() bool { return n == FragNum{} }

// Compare orders fragment numbers.
func (n FragNum) Compare(m FragNum) int {
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
func (n FragNum) Next() FragNum {
	for i := len(n) - 1; i >= 0; i-- {
		n[i]++
		if n[i] != 0 {
			break
		}
	}
	return n
}

// FragNumDecimalLen is the width of the decimal form.
const FragNumDecimalLen = 1 + 16 + 5 + 10

// maxTerm keeps the term within 16 decimal digits (year 318857).
const maxTerm = 9_999_999_999_999_999

// AppendDecimal appends the wire form: "1", then term (16 digits), node (5)
// and seq (10), zero-padded: 32 digits, fixed width, so string order is
// numeric order.
func (n FragNum) AppendDecimal(dst []byte) []byte {
	dst = append(dst, '1')
	dst = appendPadded(dst, n.Term(), 16)
	dst = appendPadded(dst, uint64(n.Node()), 5)
	return appendPadded(dst, uint64(n.Seq()), 10)
}

func (n FragNum) String() string { return string(n.AppendDecimal(make([]byte, 0, FragNumDecimalLen))) }

func appendPadded(dst []byte, v uint64, width int) []byte {
	var buf [20]byte
	s := strconv.AppendUint(buf[:0], v, 10)
	for i := len(s); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// ErrBadFragNum reports a string that is not a kvsedge fragment number.
var ErrBadFragNum = errors.New("lsm: not a fragment number")

// ParseFragNum parses the decimal form.
func ParseFragNum(s string) (FragNum, error) {
	if len(s) != FragNumDecimalLen || s[0] != '1' {
		return FragNum{}, fmt.Errorf("%w: %q", ErrBadFragNum, s)
	}
	term, err1 := strconv.ParseUint(s[1:17], 10, 64)
	node, err2 := strconv.ParseUint(s[17:22], 10, 16)
	seq, err3 := strconv.ParseUint(s[22:], 10, 32)
	if err1 != nil || err2 != nil || err3 != nil || term > maxTerm {
		return FragNum{}, fmt.Errorf("%w: %q", ErrBadFragNum, s)
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return FragNum{}, fmt.Errorf("%w: %q", ErrBadFragNum, s)
		}
	}
	return MakeFragNum(term, uint16(node), uint32(seq)), nil
}
