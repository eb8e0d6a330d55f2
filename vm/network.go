package vm

import (
	"errors"

	"github.com/vmrunner/vmrunner/config"
)

// network creates the host side of bridge and direct NICs and appends
// their fds to out.Files in the order MakePlan numbered them.
func (p *Plan) network(out *Prepared) (func(), bool, error) {
	for _, n := range p.NICs {
		if n.Tap != nil {
			return nil, false, &config.Error{Var: n.Prefix() + "MODE", Value: string(n.Mode),
				Accepted: "nat or none (bridge and direct are not in this build yet)", Err: errors.New("not implemented")}
		}
	}
	return nil, false, nil
}
