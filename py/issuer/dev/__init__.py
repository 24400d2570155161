"""Development-only stand-ins (fake Clerk). Never active unless configured."""
