package sockstat

import (
	"strings"
	"testing"
)

func TestSS(t *testing.T) {
	client := `State Recv-Q Send-Q Local Address:Port  Peer Address:Port Process
ESTAB 0      0      10.250.1.2:43122    10.250.1.1:8080
	 cubic wscale:7,7 rto:204 rtt:0.05/0.025 mss:1448
FIN-WAIT-2 0 0      10.250.1.2:43124    10.250.1.1:8080
ESTAB 0      0      10.250.1.2:43126    10.250.1.1:9999
ESTAB 0      0      [fd00:250::2]:50000 [fd00:250::1]:8080
`
	got := SS(strings.NewReader(client), 8080)
	if len(got) != 3 {
		t.Fatalf("client side: %v", got)
	}
	for _, p := range []uint16{43122, 43124, 50000} {
		if _, ok := got[p]; !ok {
			t.Errorf("port %d missing", p)
		}
	}
	server := "ESTAB 0 0 10.250.1.1:8080 10.250.1.2:43122\nLAST-ACK 0 1 10.250.1.1:8080 10.250.1.2:43130\n"
	got = SS(strings.NewReader(server), 8080)
	if _, ok := got[43130]; !ok || len(got) != 2 {
		t.Errorf("server side: %v", got)
	}
	all := Ports{}
	all.Add(got)
	all.Add(SS(strings.NewReader(client), 8080))
	if len(all) != 4 {
		t.Errorf("union %v", all)
	}
}

func TestConntrack(t *testing.T) {
	out := `tcp      6 119 TIME_WAIT src=10.250.1.2 dst=10.250.1.1 sport=43122 dport=8080 packets=5 bytes=1300 src=10.250.1.1 dst=10.250.1.2 sport=8080 dport=43122 packets=4 bytes=2250 [ASSURED] mark=0 use=1
tcp      6 431999 ESTABLISHED src=10.250.1.2 dst=10.250.1.1 sport=43124 dport=8080 src=10.250.1.1 dst=10.250.1.2 sport=8080 dport=43124 [ASSURED] mark=0 use=1
udp      17 29 src=10.250.1.2 dst=10.250.1.1 sport=40000 dport=53 src=10.250.1.1 dst=10.250.1.2 sport=53 dport=40000 mark=0 use=1
`
	ports, bytes := Conntrack(strings.NewReader(out), 8080)
	if len(ports) != 2 || bytes != 1300 {
		t.Errorf("ports %v bytes %d", ports, bytes)
	}
}
