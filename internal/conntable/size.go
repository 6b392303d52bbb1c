package conntable

import (
	"fmt"
	"time"
)

// SocketsFor is the TCP table size that holds everything a kernel map of
// kernelSockets can report: the sockets live in it, and as many that left
// it without their end event yet (kept vanishAfter syncs).
func SocketsFor(kernelSockets int) int { return vanishAfter * kernelSockets }

// ConversationsFor is the UDP table size that holds everything a kernel
// map of kernelConversations can report, read every interval: the
// conversations live in it, and the released ones remembered for their
// role. A kernel entry is released after idle of silence, so each entry
// frees its slot at most once per idle; a released conversation is
// remembered until remember after its last datagram, at most
// remember-idle+interval after its release. Hence per slot at most
// ceil((remember-idle+interval)/idle) remembered, plus the live one.
func ConversationsFor(kernelConversations int, idle, remember, interval time.Duration) int {
	if idle <= 0 {
		return kernelConversations
	}
	released := (max(remember-idle, 0) + interval + idle - 1) / idle
	return kernelConversations * (int(released) + 1)
}

// Fit sizes the tables left at zero for kernel maps of kernelSockets TCP
// sockets and kernelConversations UDP conversations, read every interval,
// and rejects explicit sizes or durations that cannot hold what those maps
// report.
func (c *Config) Fit(kernelSockets, kernelConversations int, interval time.Duration) error {
	switch {
	case c.UDPIdle < 0 || c.UDPForget < 0:
		return fmt.Errorf("negative UDP idle %s or remember %s", c.UDPIdle, c.UDPForget)
	case c.UDPIdle > 0 && c.UDPForget > 0 && c.UDPForget < c.UDPIdle:
		return fmt.Errorf("UDP conversations remembered %s, less than the %s idle after which they are released: nothing would be remembered", c.UDPForget, c.UDPIdle)
	case c.MaxSockets < 0 || c.MaxConversations < 0:
		return fmt.Errorf("negative table size: %d TCP sockets, %d UDP conversations", c.MaxSockets, c.MaxConversations)
	}
	if c.UDPIdle == 0 {
		c.UDPIdle = defaultUDPIdle
	}
	if c.UDPForget == 0 {
		c.UDPForget = max(defaultUDPForget, c.UDPIdle)
	}
	sockets := SocketsFor(kernelSockets)
	switch {
	case c.MaxSockets == 0:
		c.MaxSockets = sockets
	case c.MaxSockets < sockets:
		return fmt.Errorf("the TCP table holds %d sockets, fewer than the %d a kernel map of %d can report (%d×, for sockets gone without an end event yet): raise it, or leave it 0 to size it",
			c.MaxSockets, sockets, kernelSockets, vanishAfter)
	}
	convs := ConversationsFor(kernelConversations, c.UDPIdle, c.UDPForget, interval)
	switch {
	case c.MaxConversations == 0:
		c.MaxConversations = convs
	case c.MaxConversations < convs:
		return fmt.Errorf("the UDP table holds %d conversations, fewer than the %d a kernel map of %d can report with %s idle, %s remembered and a %s interval: raise it, shorten the memory, or leave it 0 to size it",
			c.MaxConversations, convs, kernelConversations, c.UDPIdle, c.UDPForget, interval)
	}
	return nil
}
