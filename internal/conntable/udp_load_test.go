package conntable

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// kernelUDP simulates the udp_flows map: one entry per (socket, local,
// remote), created by a datagram when there is room, deleted only by the
// table's expiry.
type kernelUDP struct {
	entries []flow.UDPConversation
	ended   []flow.UDPConversation // moved out by udp_release, taken at each read
	index   map[convKey]int
	cap     int
	lost    uint64 // datagrams not counted: map full
	peak    int
}

func (k *kernelUDP) datagram(cookie uint64, local, remote netip.AddrPort, send bool, bytes, at uint64) {
	key := newConvKey(cookie, local, remote)
	i, ok := k.index[key]
	if !ok {
		if len(k.entries) >= k.cap {
			k.lost++
			return
		}
		i = len(k.entries)
		k.index[key] = i
		k.entries = append(k.entries, flow.UDPConversation{Cookie: cookie, Local: local, Remote: remote,
			Owner: flow.Owner{PID: uint32(cookie), Netns: 1}, Initiator: send, FirstNS: at})
		k.peak = max(k.peak, len(k.entries))
	}
	c := &k.entries[i]
	c.LastNS = at
	if send {
		c.TxBytes += bytes
		c.TxDatagrams++
	} else {
		c.RxBytes += bytes
		c.RxDatagrams++
	}
}

// end moves a socket's conversation out, as udp_release does when the
// socket closes.
func (k *kernelUDP) end(cookie uint64, local, remote netip.AddrPort) {
	i := k.index[newConvKey(cookie, local, remote)]
	k.ended = append(k.ended, k.entries[i])
	k.delete([]int{i})
}

// takeEnded hands the ended conversations to the table, as the agent
// does before each read.
func (k *kernelUDP) takeEnded(tb *Table) {
	for i := range k.ended {
		tb.EndedUDP(&k.ended[i])
	}
	k.ended = k.ended[:0]
}

// read returns what read_udp would: the entries counted at or after
// since, and those silent since before idleBefore, with each one's index
// in entries.
func (k *kernelUDP) read(since, idleBefore uint64) (changed []flow.UDPConversation, at []int) {
	for i, c := range k.entries {
		if c.LastNS >= since || c.LastNS < idleBefore {
			changed = append(changed, c)
			at = append(at, i)
		}
	}
	return changed, at
}

// release deletes the entries SyncUDP expired, indexes into changed, and
// hands each one's final counts to the table, as the agent does.
func (k *kernelUDP) release(tb *Table, changed []flow.UDPConversation, at, expired []int) {
	idx := make([]int, 0, len(expired))
	for _, j := range expired {
		final := k.entries[at[j]]
		tb.ReleasedUDP(&changed[j], &final)
		idx = append(idx, at[j])
	}
	k.delete(idx)
}

// delete removes the entries at idx: from the highest down, each swapped
// with the last.
func (k *kernelUDP) delete(idx []int) {
	slices.Sort(idx)
	for j := len(idx) - 1; j >= 0; j-- {
		i, last := idx[j], len(k.entries)-1
		c := k.entries[i]
		delete(k.index, newConvKey(c.Cookie, c.Local, c.Remote))
		if i != last {
			m := k.entries[last]
			k.entries[i] = m
			k.index[newConvKey(m.Cookie, m.Local, m.Remote)] = i
		}
		k.entries = k.entries[:last]
	}
}

type dnsTotals struct {
	queries, responses         uint64 // datagrams
	queryBytes, responseBytes  uint64
	records                    int
	tablePeak                  int
	kernelPeak                 int
	kernelLost                 uint64
	stats                      Stats
	perRole                    map[string][4]uint64 // datagrams to dst, to src, bytes to dst, to src
	wantRecords, crossInterval int
}

// simulateDNS runs a resolver that opens a socket per query, qps queries a
// second for the given seconds, against one server socket on :53, both on
// this node: every query is a client conversation and a server one. Half
// the client sockets close at their answer (their conversation ends), the
// others stay open until idle. The
// agent reads the kernel map once a second, only the conversations that
// changed since the last read and those gone idle, as read_udp does. A query's answer comes 300 µs
// later, or 10 ms for the last 5 of each second, after the read. Client
// ports cycle through the ephemeral range, so the server socket's
// conversations come back after their kernel entry was released.
func simulateDNS(t *testing.T, cfg Config, kernelCap, qps int, seconds uint64) dnsTotals {
	t.Helper()
	const (
		sec       = uint64(time.Second)
		queryLen  = 40
		ephemeral = 60999 - 32768 + 1
	)
	resolver, dns := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddrPort("10.0.0.53:53")
	const serverCookie = 1
	tb := New(cfg)
	k := &kernelUDP{index: map[convKey]int{}, cap: kernelCap}
	got := dnsTotals{perRole: map[string][4]uint64{}}
	type answer struct {
		cookie uint64
		local  netip.AddrPort
		bytes  uint64
		at     uint64
	}
	var late []answer // answers after the read that ends their query's interval
	cookie, port := uint64(serverCookie), 0
	since := uint64(0) // the last read's time, as the datapath keeps it
	for s := uint64(1); s <= seconds+1; s++ {
		start, now := (s-1)*sec, s*sec
		for _, a := range late {
			k.datagram(a.cookie, a.local, dns, false, a.bytes, a.at)
			k.datagram(serverCookie, dns, a.local, true, a.bytes, a.at)
			k.end(a.cookie, a.local, dns)
		}
		late = late[:0]
		for i := 0; s <= seconds && i < qps; i++ {
			cookie++
			local := netip.AddrPortFrom(resolver, uint16(32768+port%ephemeral))
			port++
			at := start + uint64(i)*sec/uint64(qps)
			k.datagram(cookie, local, dns, true, queryLen, at)
			k.datagram(serverCookie, dns, local, false, queryLen, at)
			got.queries++
			got.queryBytes += queryLen
			bytes := uint64(80 + i%7)
			got.responses++
			got.responseBytes += bytes
			if i >= qps-5 {
				late = append(late, answer{cookie, local, bytes, at + 10*uint64(time.Millisecond)})
				got.crossInterval++
				continue
			}
			at += 300 * uint64(time.Microsecond)
			k.datagram(cookie, local, dns, false, bytes, at)
			k.datagram(serverCookie, dns, local, true, bytes, at)
			if i%2 == 0 { // the others stay open: released when idle
				k.end(cookie, local, dns)
			}
		}
		k.takeEnded(tb)
		changed, at := k.read(since, now-min(now, uint64(tb.UDPIdle())))
		since = now
		k.release(tb, changed, at, tb.SyncUDP(changed, now))
		recs := tb.Flush(t0, t1)
		got.records += len(recs)
		for _, r := range recs {
			v := got.perRole[r.Observer]
			v[0] += uint64(r.DatagramsToDst)
			v[1] += uint64(r.DatagramsToSrc)
			v[2] += r.BytesToDst
			v[3] += r.BytesToSrc
			got.perRole[r.Observer] = v
		}
		got.tablePeak = max(got.tablePeak, tb.Stats().Conversations)
	}
	got.kernelPeak, got.kernelLost, got.stats = k.peak, k.lost, tb.Stats()
	// One record per conversation side and interval it was active in.
	got.wantRecords = 2 * (int(got.queries) + got.crossInterval)
	return got
}

func (d dnsTotals) check(t *testing.T) {
	t.Helper()
	want := [4]uint64{d.queries, d.responses, d.queryBytes, d.responseBytes}
	for _, role := range []string{"client", "server"} {
		if d.perRole[role] != want {
			t.Errorf("%s records: datagrams to dst/src, bytes to dst/src %v, want %v", role, d.perRole[role], want)
		}
	}
	if d.records != d.wantRecords {
		t.Errorf("%d records, want %d", d.records, d.wantRecords)
	}
	if d.kernelLost != 0 {
		t.Errorf("%d datagrams lost to a full kernel map", d.kernelLost)
	}
	if d.stats.Conversations > 0 && d.tablePeak > New(Config{}).cfg.MaxConversations {
		t.Errorf("table peak %d", d.tablePeak)
	}
}

// A resolver at 1,000 queries a second for 5 minutes, with the default
// kernel map and the table sized from it: every datagram and byte
// reported, nothing dropped, forgotten early or released early.
func TestUDPSustainedDNSFiveMinutesExact(t *testing.T) {
	d := simulateDNS(t, Config{}, defaultKernelConversations, 1000, 300)
	d.check(t)
	if s := d.stats; s.ConversationsReleasedEarly != 0 || s.ConversationsForgottenEarly != 0 {
		t.Errorf("losses with a table sized from the kernel map: %+v", s)
	}
	t.Logf("5 min at 1000 queries/s: %d records, %d+%d datagrams, %d+%d bytes; table peak %d of %d, kernel map peak %d of %d; released early %d, forgotten early %d, kernel-lost %d",
		d.records, d.queries, d.responses, d.queryBytes, d.responseBytes, d.tablePeak, New(Config{}).cfg.MaxConversations,
		d.kernelPeak, defaultKernelConversations, d.stats.ConversationsReleasedEarly, d.stats.ConversationsForgottenEarly, d.kernelLost)
}

// A table too small to remember released conversations for UDPForget
// forgets the oldest first, counted once each, and still accounts every
// datagram.
func TestUDPTableTooSmallToRememberForgetsOldestReleased(t *testing.T) {
	// Live entries peak near 6,000 (5 s idle + the read); 20,000 remembers
	// about 14 s of released ones instead of 55 s.
	d := simulateDNS(t, Config{MaxConversations: 20_000}, defaultKernelConversations, 1000, 40)
	d.check(t)
	if d.stats.ConversationsReleasedEarly != 0 || d.stats.ConversationsForgottenEarly == 0 || d.tablePeak != 20_000 {
		t.Errorf("stats %+v, peak %d: want forgotten early, nothing released early, a full table", d.stats, d.tablePeak)
	}
	// Every conversation is forgotten exactly once, early or not: none is
	// counted twice. Client ones are unique; server ones come back with
	// the client port, and are remembered again.
	if f := d.stats.ConversationsForgottenEarly; f > 2*d.queries {
		t.Errorf("forgotten early %d, more than the %d conversations", f, 2*d.queries)
	}
}

// A table smaller than the live kernel entries accounts a conversation that
// does not fit whole and releases its kernel entry at once, instead of
// neither counting nor expiring it.
func TestUDPTableSmallerThanKernelReleasesEarly(t *testing.T) {
	const size, qps = 3_000, 1000
	d := simulateDNS(t, Config{MaxConversations: size}, defaultKernelConversations, qps, 30)
	// A conversation released early may come back from its answer first,
	// and flip role: the datagrams are all there, some under the other
	// observer.
	var datagrams, bytes uint64
	for _, v := range d.perRole {
		datagrams, bytes = datagrams+v[0]+v[1], bytes+v[2]+v[3]
	}
	if want := 2 * (d.queries + d.responses); datagrams != want {
		t.Errorf("%d datagrams, want %d", datagrams, want)
	}
	if want := 2 * (d.queryBytes + d.responseBytes); bytes != want {
		t.Errorf("%d bytes, want %d", bytes, want)
	}
	if d.kernelLost != 0 {
		t.Errorf("%d datagrams lost to a full kernel map", d.kernelLost)
	}
	// After each read the kernel holds only what the table tracks; within
	// a second, that second's conversations (and the late answers) come.
	if d.stats.ConversationsReleasedEarly == 0 || d.kernelPeak > size+2*(qps+5) {
		t.Errorf("stats %+v, kernel peak %d: want conversations released early, a kernel map of at most %d", d.stats, d.kernelPeak, size+2*(qps+5))
	}
}

func TestForgetReleasedOldestFirst(t *testing.T) {
	tb := New(Config{MaxConversations: 3, UDPIdle: time.Second, UDPForget: time.Hour})
	conv := func(cookie, at uint64) flow.UDPConversation {
		return flow.UDPConversation{Cookie: cookie, Local: client, Remote: server, Initiator: true,
			FirstNS: at, LastNS: at, TxDatagrams: 1}
	}
	sec := uint64(time.Second)
	// Three conversations, last heard at 3 s, 1 s and 2 s, released.
	read := []flow.UDPConversation{conv(1, 3*sec), conv(2, 1*sec), conv(3, 2*sec)}
	for _, i := range tb.SyncUDP(read, 10*sec) {
		tb.ReleasedUDP(&read[i], &read[i])
	}
	tb.SyncUDP(nil, 11*sec)
	// Two new ones: the two oldest released (2, then 3) make room.
	tb.SyncUDP([]flow.UDPConversation{conv(4, 11*sec), conv(5, 11*sec)}, 11*sec)
	var kept []uint64
	for k := range tb.convs {
		kept = append(kept, k.cookie)
	}
	slices.Sort(kept)
	if !slices.Equal(kept, []uint64{1, 4, 5}) || tb.Stats().ConversationsForgottenEarly != 2 {
		t.Errorf("kept %v, forgotten early %d; want [1 4 5] 2", kept, tb.Stats().ConversationsForgottenEarly)
	}
}

// A live conversation is never forgotten, however long ago its last
// datagram: forgetting it would count it again from zero at the next read.
func TestLiveConversationIsNeverForgotten(t *testing.T) {
	tb := New(Config{UDPIdle: time.Second, UDPForget: 2 * time.Second})
	c := flow.UDPConversation{Cookie: 1, Local: client, Remote: server, Initiator: true, TxDatagrams: 1, TxBytes: 10}
	sec := uint64(time.Second)
	tb.SyncUDP([]flow.UDPConversation{c}, 1*sec)
	tb.Flush(t0, t1)
	// The caller could not delete it (a failed delete): still live.
	tb.SyncUDP([]flow.UDPConversation{c}, 10*sec)
	tb.SyncUDP([]flow.UDPConversation{c}, 20*sec)
	if recs := tb.Flush(t0, t1); len(recs) != 0 {
		t.Errorf("an unchanged conversation counted again: %+v", recs)
	}
}
