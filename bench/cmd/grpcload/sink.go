package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

// cmdSink is the OTLP/HTTP receiver the tracing systems of "run.sh grpc"
// export to: it takes every POST (to /v1/traces or anywhere), reads the
// batch, drops it and answers 200 with an empty protobuf body, so that a
// collector's own cost is not charged to the proxy. On SIGTERM it prints
// how many batches and bytes it took, to stderr.
func cmdSink(args []string) error {
	fs := flag.NewFlagSet("otlpsink", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	var batches, bytes atomic.Int64
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		batches.Add(1)
		bytes.Add(n)
		w.Header().Set("Content-Type", "application/x-protobuf")
	})}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	_, err = fmt.Fprintf(os.Stderr, "otlpsink: %d batches, %d bytes\n", batches.Load(), bytes.Load())
	return err
}
