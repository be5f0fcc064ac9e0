print("devbox")
