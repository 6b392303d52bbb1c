// Package tlsprobe attaches flowlens's TLS uprobes (bpf/tls.h) to the TLS
// libraries that processes on the node use, found without restarting them,
// so that the kernel side samples HTTPS requests as plaintext.
//
// Targets:
//   - OpenSSL: every libssl.so* file a process maps (/proc/<pid>/maps),
//     plus the host's own at the first scan, for processes too short-lived
//     to be seen by a periodic scan. SSL_read/SSL_write get an entry probe
//     and a uretprobe; SSL_read_ex/SSL_write_ex too where the library has
//     them.
//   - Go crypto/tls: every Go executable (1.17+, amd64) containing
//     crypto/tls.(*Conn).Read and Write, found in its pclntab, so stripped
//     binaries count too. The return is probed on each RET instruction,
//     found by disassembling the function, never by a uretprobe, which
//     breaks Go's movable stacks. (*Conn).handshakeContext is probed alike,
//     only to learn the connection's socket.
//
// A uprobe belongs to a file, not a process: it fires in every process
// that maps the file, now and later. So each file (device and inode, as
// the kernel keys it) is probed once, whichever process or container showed
// it, and opened through /proc/<pid>/map_files, which names the very file
// mapped, in any mount namespace, on overlayfs the underlying one.
//
// Scan reads the maps of processes started since the last scan; Run scans
// every 2 s, and every 30 s rereads every process (a library loaded later
// with dlopen, a process that exec'd). A file that cannot be probed is
// logged once and counted by Reason in Stats, never fatal.
package tlsprobe
