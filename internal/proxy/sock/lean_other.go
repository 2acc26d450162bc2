//go:build !linux

package sock

import (
	"errors"
	"net"
)

// Lean cannot read without a buffer on this platform: Init says so, and
// callers read their connection themselves.
type Lean struct{}

// Init tells that l cannot read nc here.
func (l *Lean) Init(net.Conn) bool { return false }

// Ready is false here.
func (l *Lean) Ready() bool { return false }

// Read is never called here (Ready is false).
func (l *Lean) Read(Buffer) (int, error) {
	return 0, errors.New("sock: no lean reads on this platform")
}

// WriteRead is never called here (Ready is false).
func (l *Lean) WriteRead(p []byte, _ Buffer) (int, []byte, error) {
	return 0, p, errors.New("sock: no lean reads on this platform")
}

// Write is never called here (Ready is false).
func (l *Lean) Write(p []byte) (int, error) {
	return 0, errors.New("sock: no lean writes on this platform")
}
