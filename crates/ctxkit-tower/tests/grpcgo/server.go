// A grpc-go server for the tests of ctxkit-tower: it serves every method, and each handler
// waits until its context is done, then prints one line with how it ended
// ("deadline_exceeded" or "canceled") and answers with that status.
//
// Built with Debian's golang-google-grpc-dev:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o server server.go
package main

import (
	"context"
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func handler(srv interface{}, stream grpc.ServerStream) error {
	ctx := stream.Context()
	<-ctx.Done()
	switch ctx.Err() {
	case context.DeadlineExceeded:
		fmt.Println("deadline_exceeded")
		return status.Error(codes.DeadlineExceeded, "handler: deadline exceeded")
	default:
		fmt.Println("canceled")
		return status.Error(codes.Canceled, "handler: canceled")
	}
}

func main() {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", lis.Addr())
	s := grpc.NewServer(grpc.UnknownServiceHandler(handler))
	if err := s.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
