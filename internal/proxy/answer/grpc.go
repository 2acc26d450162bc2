package answer

import (
	"net/http"
	"strconv"
	"strings"
)

// gRPC status codes the proxy answers with (gRPC's codes package).
const (
	GRPCInvalidArgument  = 3
	GRPCDeadlineExceeded = 4
	GRPCInternal         = 13
	GRPCUnavailable      = 14
)

// GRPCCode is the gRPC status of an answer: what a gRPC client gets instead
// of the JSON body (a trailers-only answer).
func (a Answer) GRPCCode() int {
	switch a.Status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return GRPCInvalidArgument
	case http.StatusGatewayTimeout:
		return GRPCDeadlineExceeded
	case http.StatusServiceUnavailable, http.StatusBadGateway:
		return GRPCUnavailable
	}
	return GRPCInternal
}

// GRPCMessage is the answer's grpc-message value, percent-encoded.
func (a Answer) GRPCMessage() string { return GRPCEscape(a.Body.Error) }

// GRPCEscape percent-encodes a grpc-message value (gRPC over HTTP/2 spec).
func GRPCEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b.WriteString("%" + strings.ToUpper(strconv.FormatUint(uint64(c)>>4, 16)+strconv.FormatUint(uint64(c)&15, 16)))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
