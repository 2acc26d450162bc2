package proxy

import "syscall"

// errTooManyFiles is what Accept fails with when the process is out of file
// descriptors; Serve backs off instead of giving up.
var errTooManyFiles error = syscall.EMFILE
