package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"syscall"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/serve/sigv4"
	"github.com/valyala/fasthttp"
)

// apiError is a KVS error shape: its name goes into x-amzn-ErrorType and the
// body, its status is the one the service model gives the shape.
type apiError struct {
	Status  int
	Type    string
	Message string
}

func (e *apiError) Error() string { return e.Type + ": " + e.Message }

// KVS error shapes (botocore kinesisvideo model, shared/kvs-api.md §1.5).
const (
	errInvalidArgument       = "InvalidArgumentException"
	errResourceNotFound      = "ResourceNotFoundException"
	errResourceInUse         = "ResourceInUseException"
	errVersionMismatch       = "VersionMismatchException"
	errTagsPerResource       = "TagsPerResourceExceededLimitException"
	errInvalidResourceFormat = "InvalidResourceFormatException"
	errAccountStreamLimit    = "AccountStreamLimitExceededException"
	errNoDataRetention       = "NoDataRetentionException"
	errNotAuthorized         = "NotAuthorizedException"
	errAccessDenied          = "AccessDeniedException"
	errClientLimitExceeded   = "ClientLimitExceededException"
	errUnknownOperation      = "UnknownOperationException"
	errNotImplemented        = "NotImplementedException"
	errInternalFailure       = "InternalFailure"
	errMissingAuthToken      = "MissingAuthenticationTokenException"
)

func invalidArgument(format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: errInvalidArgument, Message: fmt.Sprintf(format, args...)}
}

func newAPIError(status int, typ, format string, args ...any) *apiError {
	return &apiError{Status: status, Type: typ, Message: fmt.Sprintf(format, args...)}
}

// writeError answers with a KVS error. The body carries the type three ways
// (header, "__type", "code") so botocore, the Go SDK and hand-written clients
// all recognise it.
func writeError(ctx *fasthttp.RequestCtx, e *apiError) {
	ctx.Response.Reset()
	setRequestID(ctx)
	ctx.SetStatusCode(e.Status)
	ctx.Response.Header.Set("x-amzn-ErrorType", e.Type)
	ctx.SetContentType("application/json")
	body, _ := json.Marshal(struct {
		Type    string `json:"__type"`
		Code    string `json:"code"`
		Message string `json:"message"`
	}{e.Type, e.Type, e.Message})
	ctx.SetBody(body)
}

// engineError maps an engine error to the KVS shape a caller of op expects.
// ARN-addressed tagging operations report AccessDenied rather than
// NotAuthorized, as the model does, but that distinction only matters for
// authorisation failures, which happen before this point.
func engineError(err error) *apiError {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, engine.ErrStreamNotFound):
		return newAPIError(http.StatusNotFound, errResourceNotFound, "The requested stream is not found or not active.")
	case errors.Is(err, engine.ErrStreamExists):
		return newAPIError(http.StatusBadRequest, errResourceInUse, "The stream is currently not available for this operation: a stream with this name already exists.")
	case errors.Is(err, engine.ErrVersionMismatch):
		return newAPIError(http.StatusBadRequest, errVersionMismatch, "The stream version you specified is not the latest version.")
	case errors.Is(err, engine.ErrTooManyTags):
		return newAPIError(http.StatusBadRequest, errTagsPerResource, "You have exceeded the limit of tags that you can associate with the resource. A Kinesis video stream can support up to 50 tags.")
	case errors.Is(err, engine.ErrTooManyStreams):
		return newAPIError(http.StatusBadRequest, errAccountStreamLimit, "The number of streams created for the account is too high.")
	case errors.Is(err, engine.ErrInvalidRetention):
		return invalidArgument("%s", trimEngine(err))
	case errors.Is(err, engine.ErrNoDataRetention):
		return newAPIError(http.StatusBadRequest, errNoDataRetention, "The Stream data retention in hours is equal to zero.")
	case errors.Is(err, engine.ErrStreamNotActive):
		return newAPIError(http.StatusBadRequest, errResourceInUse, "The stream is currently not available for this operation.")
	case errors.Is(err, engine.ErrInvalidStreamARN):
		return invalidArgument("The stream ARN is malformed.")
	case errors.Is(err, engine.ErrStreamNameRequired):
		return invalidArgument("Either StreamName or StreamARN must be specified.")
	case errors.Is(err, engine.ErrStorageFull), errors.Is(err, syscall.ENOSPC):
		// Retriable: the SDKs back off and retry this exception.
		return newAPIError(http.StatusBadRequest, errClientLimitExceeded, "The box's storage is full: changes are refused until space returns. Retry later.")
	}
	return newAPIError(http.StatusInternalServerError, errInternalFailure, "The request processing has failed because of an unknown error, exception or failure.")
}

func trimEngine(err error) string {
	s := err.Error()
	const p = "engine: "
	for len(s) > len(p) && s[:len(p)] == p {
		s = s[len(p):]
	}
	return s
}

// authError maps a SigV4 failure to the error AWS services answer with.
func authError(err error) *apiError {
	var se *sigv4.Error
	if errors.As(err, &se) {
		return &apiError{Status: se.Status(), Type: string(se.Code), Message: se.Message}
	}
	return newAPIError(http.StatusForbidden, errMissingAuthToken, "Missing Authentication Token")
}
