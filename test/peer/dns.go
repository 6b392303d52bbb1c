package main

import (
	"flag"
	"net"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/flowlens/flowlens/test/peer/result"
)

// dnsServe answers every A question with 192.0.2.1 (TEST-NET-1) and counts
// the exact bytes of each query and answer, so a test can check flowlens'
// per-direction UDP counts against real DNS traffic from dig.
func dnsServe(args []string) (any, error) {
	fs := flag.NewFlagSet("dns-serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	maxTime := fs.Duration("duration", 10*time.Minute, "stop after this long")
	_ = fs.Parse(args)

	pc, err := net.ListenPacket("udp", *listen)
	if err != nil {
		return nil, err
	}
	ctx, cancel := until(*maxTime)
	defer cancel()
	emit(map[string]any{"ready": true, "addr": pc.LocalAddr().String()})
	go func() { <-ctx.Done(); pc.Close() }()

	var res result.Serve
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			break
		}
		res.DatagramsIn++
		res.BytesIn += int64(n)
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired})
		b.EnableCompression()
		_ = b.StartQuestions()
		_ = b.Question(q)
		_ = b.StartAnswers()
		if q.Type == dnsmessage.TypeA {
			_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60},
				dnsmessage.AResource{A: [4]byte{192, 0, 2, 1}})
		}
		msg, err := b.Finish()
		if err != nil {
			continue
		}
		m, err := pc.WriteTo(msg, from)
		if err == nil {
			res.DatagramsOut++
			res.BytesOut += int64(m)
		}
	}
	return res, nil
}
