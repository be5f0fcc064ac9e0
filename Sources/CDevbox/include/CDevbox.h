#pragma once
int dbx_placeholder(void);
