package datapath

import (
	"testing"
	"time"
	"unsafe"

	"github.com/flowlens/flowlens/internal/conntable"
	"github.com/flowlens/flowlens/internal/flow"
)

// sample builds a well-formed ring-buffer record as the kernel writes it.
func sample(kind flowlensEventKind, family uint16, role flowlensRole) []byte {
	var ev flowlensConnEvent
	ev.Kind = uint8(kind)
	ev.State.Tuple.Family = family
	ev.State.Tuple.LocalPort, ev.State.Tuple.RemotePort = 40000, 80
	copy(ev.State.Tuple.LocalAddr[:], []byte{10, 0, 0, 1})
	copy(ev.State.Tuple.RemoteAddr[:], []byte{10, 0, 0, 2})
	ev.State.Role = uint8(role)
	ev.State.Cookie = 7
	ev.State.BytesSent, ev.State.BytesRecv = 3000, 700
	ev.State.Established = 1
	ev.State.EndNs = 2
	copy(ev.State.Owner.Comm[:], []int8{'p', 'e', 'e', 'r'})
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&ev)), unsafe.Sizeof(ev))...)
}

func TestDecodeEndRejectsWhatTheKernelNeverWrites(t *testing.T) {
	var d Datapath
	good := sample(flowlensEventKindEVENT_CLOSE, afInet, flowlensRoleROLE_CLIENT)
	ev, err := d.decodeEnd(good)
	if err != nil {
		t.Fatalf("well-formed record: %v", err)
	}
	if ev.Socket.BytesSent != 3000 || ev.Socket.Local.String() != "10.0.0.1:40000" || ev.Socket.Owner.Command != "peer" || ev.Failed {
		t.Errorf("decoded %+v", ev)
	}
	for name, raw := range map[string][]byte{
		"short":        good[:len(good)-1],
		"empty":        nil,
		"kind 0":       sample(0, afInet, flowlensRoleROLE_CLIENT),
		"kind 9":       sample(9, afInet, flowlensRoleROLE_CLIENT),
		"family 1":     sample(flowlensEventKindEVENT_CLOSE, 1, flowlensRoleROLE_CLIENT),
		"role 3":       sample(flowlensEventKindEVENT_CLOSE, afInet6, 3),
		"misaligned":   nil, // filled below
		"longer is ok": nil,
	} {
		switch name {
		case "misaligned":
			buf := append([]byte{0}, good...)
			if _, err := d.decodeEnd(buf[1:]); err != nil {
				t.Errorf("misaligned well-formed record: %v", err)
			}
			continue
		case "longer is ok":
			if _, err := d.decodeEnd(append(append([]byte(nil), good...), 0, 0, 0, 0, 0, 0, 0, 0)); err != nil {
				t.Errorf("padded record: %v", err)
			}
			continue
		}
		if _, err := d.decodeEnd(raw); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzDecodeEnd feeds arbitrary ring-buffer records through the decoder and
// the connection table: never a panic, and what is accepted yields at most
// one record per event whose byte counts are the event's own.
func FuzzDecodeEnd(f *testing.F) {
	for _, k := range []flowlensEventKind{flowlensEventKindEVENT_CLOSE, flowlensEventKindEVENT_CONNECT_FAIL} {
		for _, fam := range []uint16{afInet, afInet6} {
			for _, r := range []flowlensRole{flowlensRoleROLE_UNKNOWN, flowlensRoleROLE_CLIENT, flowlensRoleROLE_SERVER} {
				f.Add(sample(k, fam, r))
			}
		}
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var d Datapath
		ev, err := d.decodeEnd(raw)
		if err != nil {
			return
		}
		if ev.Socket.Role > flow.RoleServer {
			t.Fatalf("accepted role %d", ev.Socket.Role)
		}
		if len(ev.Socket.Owner.Command) > 16 {
			t.Fatalf("command %q longer than the kernel's", ev.Socket.Owner.Command)
		}
		table := conntable.New(conntable.Config{})
		table.EndTCP(ev)
		recs := table.Flush(time.Unix(0, 0), time.Unix(1, 0))
		if len(recs) > 1 {
			t.Fatalf("one event made %d records", len(recs))
		}
		for _, r := range recs {
			if r.BytesToDst+r.BytesToSrc != ev.Socket.BytesSent+ev.Socket.BytesRecv {
				t.Fatalf("bytes %d+%d, event had %d+%d", r.BytesToDst, r.BytesToSrc, ev.Socket.BytesSent, ev.Socket.BytesRecv)
			}
		}
	})
}

// l7Record builds an L7 sample record as the kernel writes it: the header
// and only the captured bytes.
func l7Record(data string, length uint32) []byte {
	var ev flowlensL7Event
	ev.Cookie, ev.Ns, ev.Len, ev.Captured = 9, 5, length, uint16(len(data))
	ev.Tuple.Family, ev.Tuple.Protocol = afInet, 6
	ev.Tuple.LocalPort, ev.Tuple.RemotePort = 40000, 80
	ev.Role, ev.Hint = uint8(flowlensRoleROLE_CLIENT), uint8(flowlensL7HintL7HINT_HTTP)
	head := int(unsafe.Offsetof(ev.Data))
	return append(append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&ev)), head)...), data...)
}

func TestDecodeL7RejectsWhatTheKernelNeverWrites(t *testing.T) {
	var ev flowlensL7Event
	good := l7Record("GET / HTTP/1.1\r\n", 300)
	s, err := decodeL7(good, &ev)
	if err != nil {
		t.Fatalf("well-formed record: %v", err)
	}
	if string(s.Data) != "GET / HTTP/1.1\r\n" || s.Len != 300 || s.Hint != flow.HTTP || s.Role != flow.RoleClient || s.Remote.Port() != 80 {
		t.Errorf("decoded %+v", s)
	}
	for name, raw := range map[string][]byte{
		"short header":       good[:10],
		"fewer than claimed": good[:len(good)-1],
		"more than moved":    l7Record("GET / HTTP/1.1\r\n", 3),
	} {
		if _, err := decodeL7(raw, &ev); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func FuzzDecodeL7(f *testing.F) {
	f.Add(l7Record("GET / HTTP/1.1\r\n", 300))
	f.Add(l7Record("", 0))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var ev flowlensL7Event
		s, err := decodeL7(raw, &ev)
		if err != nil {
			return
		}
		if len(s.Data) > s.Len || len(s.Data) > L7MaxCapture {
			t.Fatalf("decoded %d bytes of a %d-byte call", len(s.Data), s.Len)
		}
	})
}
