package ship

import (
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/flowlens/flowlens/api/flowlens/v1"
	"github.com/flowlens/flowlens/internal/wire"
)

// BenchmarkShipToIngest measures records through Send, gRPC over a unix
// socket, ingest's checks and decoding, to their acks: both ends in one
// process, so on 2 cores it is what one agent and its hub cost together.
func BenchmarkShipToIngest(b *testing.B) {
	sock := filepath.Join(b.TempDir(), "hub.sock")
	startHub(b, sock, &recorder{})
	const batch = 1000
	s := New(testConfig(sock, batch, b.N+1), discard)
	run(b, s)
	recs := records(1, batch)
	p, err := wire.Encode(&recs[0])
	if err != nil {
		b.Fatal(err)
	}
	data, err := proto.Marshal(&pb.Batch{Records: []*pb.Record{p}})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		s.Send(recs)
	}
	for s.Stats().Acked < uint64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(len(data)), "wire-bytes/record")
}
