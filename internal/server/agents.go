package server

import (
	"encoding/json"
	"net/http"
)

// SetAgents serves GET /api/v1/agents from list: the agents a hub hears
// from, as {"agents":[…]}.
func (s *Server) SetAgents(list func() any) { s.agents = list }

func (s *Server) agentList(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.Query()) > 0 {
		s.stats.reject(rejectUnknownParameter)
		http.Error(w, "/api/v1/agents takes no query parameters", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		Agents any `json:"agents"`
	}{s.agents()})
}
