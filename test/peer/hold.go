package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flowlens/flowlens/test/peer/result"
)

// tcpHold opens -count connections, sends -before bytes on each, prints
// {"ready":true} and waits for a line on stdin (or -duration); then it sends
// -after bytes on each, half-closes, reads to EOF and closes. Between the two
// a test can start or restart an agent, and knows exactly what moved after.
func tcpHold(args []string) (any, error) {
	fs := flag.NewFlagSet("tcp-hold", flag.ExitOnError)
	addr := fs.String("addr", "", "server address")
	count := fs.Int("count", 1, "connections to hold")
	before := fs.Int("before", 0, "bytes to send on each connection before the go-ahead")
	after := fs.Int("after", 0, "bytes to send on each connection after it")
	maxTime := fs.Duration("duration", 2*time.Minute, "give up waiting for the go-ahead after this long")
	_ = fs.Parse(args)
	if *addr == "" {
		return nil, errors.New("-addr is required")
	}
	if err := checkBounds(*count, *maxTime); err != nil {
		return nil, err
	}
	var res result.Connect
	conns := make([]net.Conn, 0, *count)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	send := func(c net.Conn, n int) error {
		m, err := c.Write(make([]byte, n))
		res.BytesOut += int64(m)
		return err
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	for range *count {
		c, err := d.Dial("tcp", *addr)
		if err != nil {
			classify(&res, err)
			continue
		}
		conns = append(conns, c)
		if err := send(c, *before); err != nil {
			return nil, fmt.Errorf("send before: %w", err)
		}
	}
	emit(map[string]any{"ready": true, "held": len(conns), "bytes_out": res.BytesOut})
	goAhead := make(chan struct{})
	go func() {
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		close(goAhead)
	}()
	select {
	case <-goAhead:
	case <-time.After(*maxTime):
		return nil, errors.New("no go-ahead on stdin")
	}
	res.BytesOut = 0 // from here: what moved after the go-ahead
	for _, c := range conns {
		if err := send(c, *after); err != nil {
			return nil, fmt.Errorf("send after: %w", err)
		}
		_ = c.(*net.TCPConn).CloseWrite()
		m, _ := io.Copy(io.Discard, c)
		res.BytesIn += m
		res.OK++
	}
	return res, nil
}

// udpSend sends -count datagrams of -size bytes to -addr, or to -ports
// consecutive ports from its port, one each. With -gso K it hands the kernel
// K datagrams per sendmsg (UDP_SEGMENT); with -hopopts every IPv6 datagram
// carries a hop-by-hop options header. It expects no answer.
func udpSend(args []string) (any, error) {
	fs := flag.NewFlagSet("udp-send", flag.ExitOnError)
	addr := fs.String("addr", "", "destination address")
	count := fs.Int("count", 1, "datagrams to send")
	size := fs.Int("size", 100, "payload bytes per datagram")
	ports := fs.Int("ports", 1, "spread the datagrams over this many consecutive ports")
	gso := fs.Int("gso", 0, "datagrams per sendmsg through UDP_SEGMENT (0: one per call)")
	hopopts := fs.Bool("hopopts", false, "add an IPv6 hop-by-hop options header")
	maxTime := fs.Duration("duration", time.Minute, "stop after this long")
	_ = fs.Parse(args)
	dst, err := netip.ParseAddrPort(*addr)
	if err != nil {
		return nil, fmt.Errorf("-addr: %w", err)
	}
	if err := checkBounds(*count, *maxTime); err != nil {
		return nil, err
	}
	if *ports < 1 || int(dst.Port())+*ports > 65536 || *size < 1 || *size > 1400 {
		return nil, errors.New("-ports or -size out of range")
	}
	network := "udp4"
	if dst.Addr().Is6() {
		network = "udp6"
	}
	c, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var serr error
	ctl := func(f func(fd int) error) error {
		if err := raw.Control(func(fd uintptr) { serr = f(int(fd)) }); err != nil {
			return err
		}
		return serr
	}
	if *hopopts {
		// Next header and length are the kernel's to fill; then one PadN
		// option padding the header to its minimum 8 bytes.
		opts := []byte{0, 0, 1, 4, 0, 0, 0, 0}
		if err := ctl(func(fd int) error {
			return unix.SetsockoptString(fd, unix.IPPROTO_IPV6, unix.IPV6_HOPOPTS, string(opts))
		}); err != nil {
			return nil, fmt.Errorf("set IPV6_HOPOPTS: %w", err)
		}
	}
	per := 1
	if *gso > 1 {
		per = *gso
		if err := ctl(func(fd int) error { return unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_SEGMENT, *size) }); err != nil {
			return nil, fmt.Errorf("set UDP_SEGMENT: %w", err)
		}
	}
	var res result.Serve
	deadline := time.Now().Add(*maxTime)
	for sent := 0; sent < *count && time.Now().Before(deadline); {
		k := min(per, *count-sent)
		to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst.Addr(), dst.Port()+uint16(sent%*ports)))
		n, err := c.WriteToUDP(make([]byte, k**size), to)
		if err != nil {
			// A closed port answers with ICMP: the next send may say so.
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue
			}
			return nil, fmt.Errorf("send: %w", err)
		}
		sent += k
		res.DatagramsOut += int64(k)
		res.BytesOut += int64(n)
	}
	return res, nil
}

// udpSink counts what arrives on -listen until SIGTERM or -duration.
func udpSink(args []string) (any, error) {
	fs := flag.NewFlagSet("udp-sink", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	maxTime := fs.Duration("duration", 10*time.Minute, "stop after this long")
	_ = fs.Parse(args)
	c, err := net.ListenPacket("udp", *listen)
	if err != nil {
		return nil, err
	}
	ctx, cancel := until(*maxTime)
	defer cancel()
	emit(map[string]any{"ready": true, "addr": c.LocalAddr().String()})
	go func() { <-ctx.Done(); c.Close() }()
	var res result.Serve
	buf := make([]byte, 65536)
	for {
		m, _, err := c.ReadFrom(buf)
		if err != nil {
			return res, nil
		}
		res.DatagramsIn++
		res.BytesIn += int64(m)
	}
}
