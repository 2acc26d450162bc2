package sock

// Buffer is what a Lean read reads into. Take hands out the buffer (never
// empty); Give takes it back when the read found nothing yet, so that its
// owner holds no buffer while it waits.
type Buffer interface {
	Take() []byte
	Give()
}
