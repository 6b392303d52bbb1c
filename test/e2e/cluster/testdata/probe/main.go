// Command probe is the traffic endpoint of the cluster harness tests.
//
//	probe serve <addr> <name>  accept TCP connections, answer each with
//	                           "<name> <n>\n"; print "listening" when ready
//	                           and "accepted <n>" when stdin closes
//	probe dial <addr> <count>  make <count> sequential connections and print
//	                           each answer line
//	probe wait                 print "ready" and block until stdin closes
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail(fmt.Errorf("usage: probe serve|dial|wait ..."))
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2], os.Args[3])
	case "dial":
		n, _ := strconv.Atoi(os.Args[3])
		err = dial(os.Args[2], n)
	case "wait":
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "probe:", err)
	os.Exit(1)
}

func serve(addr, name string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	var accepted atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n := accepted.Add(1)
			fmt.Fprintf(c, "%s %d\n", name, n)
			c.Close()
		}
	}()
	fmt.Println("listening")
	io.Copy(io.Discard, os.Stdin)
	l.Close()
	fmt.Printf("accepted %d\n", accepted.Load())
	return nil
}

func dial(addr string, n int) error {
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil {
			return fmt.Errorf("read from %s: %w", addr, err)
		}
		fmt.Print(line)
	}
	return nil
}
