"""uplink: the only sender across the WAN (edge). For now a pass-through; DAT scheduling comes next."""
