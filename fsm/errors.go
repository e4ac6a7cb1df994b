package fsm

import "fmt"

// ErrorCode classifies an Error; the cluster maps it to a gRPC status code.
type ErrorCode int

const (
	// CodeInvalidArgument: the command (or entry, or config) is malformed.
	CodeInvalidArgument ErrorCode = iota + 1
	// CodeFailedPrecondition: valid, but not applicable to the current state
	// (a delta report with a sequence gap, a pin of a collected blob).
	CodeFailedPrecondition
	// CodeResourceExhausted: a size limit would be exceeded.
	CodeResourceExhausted
	// CodeNotFound: the command names something that does not exist.
	CodeNotFound
)

func (c ErrorCode) String() string {
	switch c {
	case CodeInvalidArgument:
		return "InvalidArgument"
	case CodeFailedPrecondition:
		return "FailedPrecondition"
	case CodeResourceExhausted:
		return "ResourceExhausted"
	case CodeNotFound:
		return "NotFound"
	}
	return fmt.Sprintf("ErrorCode(%d)", int(c))
}

// Error is a domain error: returned by validation and carried in Result.Err.
type Error struct {
	Code    ErrorCode
	Message string
}

func (e *Error) Error() string { return e.Code.String() + ": " + e.Message }

func errf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
