"""The lab: real strongSwan and Libreswan peers, their configuration, topology and capture."""
