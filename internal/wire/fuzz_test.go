package wire

import (
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/flowlens/flowlens/api/flowlens/v1"
)

// FuzzDecode feeds bytes to what a hub does with a batch off the network:
// unmarshal, decode. It must never panic; a batch it accepts must encode
// back to itself (the check is one definition, both ways); and what it
// holds is bounded by the input (no field makes it allocate more than a
// small multiple of what was sent).
func FuzzDecode(f *testing.F) {
	r := fullRecord()
	p, err := Encode(&r)
	if err != nil {
		f.Fatal(err)
	}
	seed, err := proto.Marshal(&pb.Batch{Seq: 7, Records: []*pb.Record{p, p}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{0x12, 0x00}) // one empty record
	f.Fuzz(func(t *testing.T, data []byte) {
		var b pb.Batch
		if err := proto.Unmarshal(data, &b); err != nil {
			return
		}
		recs, err := Records(&b)
		if err != nil {
			return
		}
		// An encoded record takes at least the bytes of its required
		// enums, version and two addresses: far more than 1 byte.
		if len(recs) > len(data) {
			t.Fatalf("%d records from %d bytes", len(recs), len(data))
		}
		for i := range recs {
			p, err := Encode(&recs[i])
			if err != nil {
				t.Fatalf("record %d was accepted but does not encode: %v", i, err)
			}
			again, err := Records(&pb.Batch{Records: []*pb.Record{p}})
			if err != nil {
				t.Fatalf("record %d re-encoded is refused: %v", i, err)
			}
			if !reflect.DeepEqual(again[0], recs[i]) {
				t.Fatalf("record %d changed on re-encoding:\n%+v\n%+v", i, again[0], recs[i])
			}
		}
	})
}
