// Command gotls is the tlsprobe tests' Go TLS program: an HTTPS server
// with a self-signed certificate on loopback, and a client of it, both
// through crypto/tls and HTTP/1.1 (HTTP/2 would carry no "GET /" line).
//
//	gotls -serve 127.0.0.1:0            prints "listening <addr>", serves until killed
//	gotls -get https://<addr>/path -n N  GETs N times on one keep-alive connection
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	serve := flag.String("serve", "", "listen address")
	get := flag.String("get", "", "URL to GET")
	n := flag.Int("n", 1, "requests")
	flag.Parse()
	switch {
	case *serve != "":
		if err := runServer(*serve); err != nil {
			log.Fatal(err)
		}
	case *get != "":
		if err := runClient(*get, *n); err != nil {
			log.Fatal(err)
		}
	default:
		flag.Usage()
		os.Exit(2)
	}
}

func runServer(addr string) error {
	cert, err := selfSigned()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "ok %s\n", r.URL.Path)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}},
		// An empty map turns HTTP/2 off.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	fmt.Printf("listening %s\n", ln.Addr())
	return srv.ServeTLS(ln, "", "")
}

func runClient(url string, n int) error {
	c := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
			MaxConnsPerHost:   1,
			ForceAttemptHTTP2: false,
		},
	}
	for i := 0; i < n; i++ {
		resp, err := c.Get(url)
		if err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("read response %d: %w", i, err)
		}
	}
	return nil
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
