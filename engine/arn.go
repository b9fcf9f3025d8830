package engine

import (
	"fmt"
	"strconv"
	"strings"
)

// StreamARN formats a stream ARN:
//
//	arn:aws:kinesisvideo:<region>:<account>:stream/<name>/<creation epoch ms>
func StreamARN(region, account, name string, creationMillis int64) string {
	return fmt.Sprintf("arn:aws:kinesisvideo:%s:%s:stream/%s/%d", region, account, name, creationMillis)
}

// ParsedARN is a kinesisvideo resource ARN split into its parts.
type ParsedARN struct {
	Partition, Region, Account string
	ResourceType               string // "stream", "channel", …
	Name                       string
	CreationMillis             int64
}

// ParseARN splits a kinesisvideo ARN of the form
// arn:<partition>:kinesisvideo:<region>:<account>:<type>/<name>/<millis>.
func ParseARN(arn string) (ParsedARN, error) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "kinesisvideo" {
		return ParsedARN{}, ErrInvalidStreamARN
	}
	res := strings.Split(parts[5], "/")
	if len(res) != 3 || res[0] == "" || res[1] == "" {
		return ParsedARN{}, ErrInvalidStreamARN
	}
	ms, err := strconv.ParseInt(res[2], 10, 64)
	if err != nil || ms < 0 {
		return ParsedARN{}, ErrInvalidStreamARN
	}
	return ParsedARN{
		Partition: parts[1], Region: parts[3], Account: parts[4],
		ResourceType: res[0], Name: res[1], CreationMillis: ms,
	}, nil
}
